"""Helpers the views share: palette, address and permission formatting,
ASCII-safe line fitting.

The palette is Okabe and Ito's eight colours for colour-blind readers
("Color Universal Design", 2008). Every colour is paired with a symbol or a
line style, so a greyscale print still tells the marks apart.
"""

from __future__ import annotations

import textwrap

from ..pgtable.common import (IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ,
                              IOMMU_WRITE, short_size)

#: Okabe-Ito palette.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: Neutral grey for headers and lanes (not a signal colour).
GREY = "#DDDDDD"

#: Marks used on trees and in text, with their colour and meaning. The
#: colours go from light (changed) to dark (stale) so they also differ in
#: greyscale; the symbol carries the meaning without any colour.
MARKS = {
    "changed": ("*", OKABE_ITO["yellow"], "changed since the previous step"),
    "cached": ("T", OKABE_ITO["sky_blue"], "cached in the TLB"),
    "stale": ("!", OKABE_ITO["vermillion"],
              "TLB holds a stale translation for this slot"),
}


def hexaddr(value: int) -> str:
    """``0x`` hex, lower case, no padding (addresses)."""
    return f"0x{value:x}"


def perm_str(prot: int) -> str:
    """IOMMU_* permission bits as a short token string: ``'RW'``,
    ``'R XN'``, ``'RW PRIV'``; ``'none'`` when nothing is granted."""
    rw = ("R" if prot & IOMMU_READ else "") + ("W" if prot & IOMMU_WRITE else "")
    parts = [rw or "none"]
    if prot & IOMMU_NOEXEC:
        parts.append("XN")
    if prot & IOMMU_PRIV:
        parts.append("PRIV")
    return " ".join(parts)


def size_str(size: int) -> str:
    """``4096`` -> ``'4K'``."""
    return short_size(size)


def ascii_only(text: str) -> str:
    """Replace anything outside printable ASCII by ``?`` (plain-text output
    must survive any mail client)."""
    return "".join(c if 32 <= ord(c) < 127 or c == "\n" else "?"
                   for c in text)


def fit_lines(lines, width: int = 72, indent: int = 4) -> list[str]:
    """Make every line ASCII and at most ``width`` columns: a longer line is
    wrapped at spaces, continuation lines indented by ``indent`` more than
    the original line's own indentation."""
    if width < 20:
        raise ValueError(f"width {width} is too narrow; plain-text views "
                         "need at least 20 columns")
    out = []
    for line in lines:
        for sub in ascii_only(str(line)).split("\n"):
            sub = sub.rstrip()
            if len(sub) <= width:
                out.append(sub)
                continue
            lead = len(sub) - len(sub.lstrip(" "))
            out.extend(textwrap.wrap(
                sub.strip(), width=width, initial_indent=" " * lead,
                subsequent_indent=" " * min(lead + indent, width // 2),
                break_long_words=True, break_on_hyphens=False))
    return out
