"""Page-table tree: one node per table, one row per entry or run of entries.

Reads a :class:`~iommu_viz.pgtable.common.PgtableSnapshot` (and optionally
the previous one and the TLB contents) and nothing else. What it draws is
the structure a hardware walker follows (Arm ARM D8, "translation table
walk"; for v7s the short-descriptor format of io-pgtable-arm-v7s.c): tables
linked by table descriptors from the root, leaf descriptors mapping output
addresses.

Rows collapse, so a 512-entry table left by ``arm_lpae_split_blk_unmap``
reads as a handful of lines:

* a run of identical invalid descriptors is one row (``[3..511] 509 x
  invalid``);
* a run of leaves of one kind whose output addresses increase by the leaf
  size, with identical attributes (what a split or a large map writes), is
  one row (``[3..511] 509 x 4K page -> 0x80003000..0x801fffff``);
* a v7s contiguous group (16 identical descriptors, a supersection or a
  large page, as ``arm_v7s_pte_to_cont`` builds and ``__arm_v7s_set_pte``
  writes) is one row (``[0..15] 16 x large, 64K CONT -> ...``).

A run is also cut where the marks change, so a highlighted entry always has
a row of its own kind of mark: ``*`` changed since ``prev``, ``T`` cached in
the TLB, ``!`` a stale TLB entry (SMMUv3 3.21: an entry survives in the TLB
until an invalidation completes) sits on this slot.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..pgtable.common import SZ_1M, SZ_4K
from .common import GREY, MARKS, fit_lines, hexaddr, size_str

__all__ = ["tree_dot", "tree_svg", "tree_text", "tree_layout", "slot_size",
           "tree_dot_faults", "tree_text_faults", "fault_slot",
           "Row", "TableView", "TreeLayout"]

#: v7s: level 1 entries map 1 MiB, level 2 entries 4 KiB
#: (ARM_V7S_LVL_SHIFT: 20 and 12).
_V7S_SLOT = {1: SZ_1M, 2: SZ_4K}


def slot_size(snapshot, level: int) -> int:
    """Bytes of input address one entry of a ``level`` table covers.

    LPAE: ARM_LPAE_BLOCK_SIZE (granule shift plus ``bits_per_level`` per
    level below); v7s: ARM_V7S_BLOCK_SIZE (1 MiB at level 1, 4 KiB at 2).
    """
    if snapshot.fmt == "lpae":
        pg = snapshot.granule.bit_length() - 1
        if not 0 <= level <= 3:
            raise ValueError(f"level {level} is not an LPAE level (0..3)")
        return 1 << (pg + (3 - level) * (pg - 3))
    if snapshot.fmt == "v7s":
        if level not in _V7S_SLOT:
            raise ValueError(f"level {level} is not a v7s level (1 or 2)")
        return _V7S_SLOT[level]
    raise ValueError(f"page-table format {snapshot.fmt!r} is not one the "
                     "tree view knows; expected 'lpae' or 'v7s'")


@dataclass(frozen=True)
class Row:
    """One displayed row: entries ``first..last`` of a table.

    ``units`` is the number of descriptors (or v7s CONT groups of
    ``unit_entries`` descriptors) the row stands for; ``info`` is the
    decoded first one; ``cached``/``stale`` the TLB entries marked on it;
    ``child`` the next-level table a table descriptor points to.
    """

    table: int
    level: int
    first: int
    last: int
    iova: int
    slot: int
    kind: str
    info: object
    pte: int
    units: int
    unit_entries: int
    changed: bool
    cached: tuple
    stale: tuple
    child: int | None
    child_known: bool
    notes: tuple = ()       # one line per stale TLB entry
    partial: bool = False   # members of an incomplete v7s CONT group

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def index_label(self) -> str:
        if self.first == self.last:
            return f"[{self.first}]"
        return f"[{self.first}..{self.last}]"

    @property
    def marks(self) -> str:
        return (("*" if self.changed else " ")
                + ("T" if self.cached else " ")
                + ("!" if self.stale else " "))

    @property
    def description(self) -> str:
        """``509 x 4K page -> 0x80003000..0x801fffff`` and the like."""
        info = self.info
        if self.kind == "invalid":
            what = "invalid" + (f" (pte {hexaddr(self.pte)})" if self.pte
                                else "")
            return what if self.count == 1 else f"{self.count} x {what}"
        if self.kind == "table":
            tail = "" if self.child_known else " (not in snapshot)"
            return f"table -> {hexaddr(info.addr)}{tail}"
        size = info.size
        end = info.addr + self.units * size - 1
        if self.partial:
            # identical descriptors of a CONT group that is not whole
            # (fewer than 16 left, or not aligned): each still claims the
            # whole 64K/16M region
            head = (f"{self.kind}, partial {size_str(size)} CONT"
                    if self.count == 1 else
                    f"{self.count} x {self.kind}, partial "
                    f"{size_str(size)} CONT")
            return f"{head} -> {hexaddr(info.addr)}..{hexaddr(info.addr + size - 1)}"
        if self.unit_entries > 1:
            groups = ("" if self.units == 1 else f"{self.units} x ")
            head = (f"{self.count} x {self.kind}, {groups}"
                    f"{size_str(size)} CONT")
        elif self.count == 1:
            head = f"{size_str(size)} {self.kind}"
        else:
            head = f"{self.count} x {size_str(size)} {self.kind}"
        if self.units == 1 and self.unit_entries == 1:
            return f"{head} -> {hexaddr(info.addr)}"
        return f"{head} -> {hexaddr(info.addr)}..{hexaddr(end)}"


@dataclass(frozen=True)
class TableView:
    paddr: int
    level: int
    iova: int
    entries: int
    slot: int
    rows: tuple
    detached: bool
    new: bool
    parent: tuple | None     # (table paddr, index) of the descriptor

    @property
    def iova_end(self) -> int:
        return self.iova + self.entries * self.slot - 1

    @property
    def title(self) -> str:
        return f"L{self.level} table {hexaddr(self.paddr)}"


@dataclass(frozen=True)
class TreeLayout:
    fmt: str
    granule: int
    levels: tuple
    root: int
    tables: tuple            # TableView, walk order then detached
    freed: tuple             # paddrs of tables gone since prev
    unplaced: tuple          # TlbEntry that map to no slot
    pte_digits: int

    def table(self, paddr: int) -> TableView:
        for t in self.tables:
            if t.paddr == paddr:
                return t
        raise KeyError(f"no table at {hexaddr(paddr)} in this layout")


def _kind_of(snapshot, level, pte):
    if snapshot.decode is None:
        raise ValueError("the snapshot carries no decode function; take it "
                         "with LpaeTable.snapshot() (or the v7s equivalent)")
    return snapshot.decode(level, pte)


def stale_note(entry, what: str = "leaf") -> str:
    """``TLB still holds 2M block -> 0x80000000`` for a stale TlbEntry
    whose descriptor decodes as ``what``."""
    text = (f"TLB still holds {size_str(entry.size)} {what} -> "
            f"{hexaddr(entry.paddr)}")
    if entry.stale_ranges and not (
            len(entry.stale_ranges) == 1
            and tuple(entry.stale_ranges[0]) == (entry.iova, entry.size)):
        parts = [f"{hexaddr(i)}+{size_str(s)}" for i, s in entry.stale_ranges]
        text += " (stale for " + ", ".join(parts) + ")"
    if entry.pending:
        text += ", invalidation pending"
    return text


def _leaf_kind(snapshot, e):
    try:
        info = _kind_of(snapshot, e.level, e.pte)
        kind = info.kind
    except (ValueError, KeyError, IndexError):
        kind = "leaf"
    return kind if kind not in ("invalid", "table") else "leaf"


def _place_tlb(snapshot, tlb):
    """Map each TlbEntry to the table slots its level and iova denote.

    Follows table descriptors from the root as a walk would (Arm ARM D8);
    an entry whose level is below where the walk now stops (its table was
    freed or replaced by a block) is placed on the slot where the walk
    stops. Returns ({(table, index): [entries]}, [unplaced entries]).
    """
    marks: dict = {}
    unplaced = []
    tables = snapshot.tables
    for e in tlb:
        t = tables.get(snapshot.root)
        placed = False
        while t is not None:
            slot = slot_size(snapshot, t.level)
            n = len(t.entries)
            if not t.iova <= e.iova < t.iova + n * slot:
                break
            idx = (e.iova - t.iova) // slot
            if t.level >= e.level:
                last = min(n - 1, (e.iova + e.size - 1 - t.iova) // slot)
                for i in range(idx, last + 1):
                    marks.setdefault((t.paddr, i), []).append(e)
                placed = True
                break
            info = _kind_of(snapshot, t.level, t.entries[idx])
            if info.kind == "table" and info.addr in tables:
                t = tables[info.addr]
                continue
            marks.setdefault((t.paddr, idx), []).append(e)
            placed = True
            break
        if not placed:
            unplaced.append(e)
    return marks, unplaced


def _reachable(snapshot):
    """Tables in walk order from the root (depth-first, entry order), with
    the descriptor that links each one."""
    tables = snapshot.tables
    order = []
    parent = {}
    seen = set()

    def visit(pa):
        seen.add(pa)
        order.append(pa)
        t = tables[pa]
        for i, pte in enumerate(t.entries):
            if not pte:
                continue
            info = _kind_of(snapshot, t.level, pte)
            if info.kind == "table" and info.addr in tables \
                    and info.addr not in seen:
                parent[info.addr] = (pa, i)
                visit(info.addr)

    if snapshot.root not in tables:
        raise ValueError(f"root table {hexaddr(snapshot.root)} is not in the "
                         "snapshot's tables")
    visit(snapshot.root)
    return order, parent


def _units(snapshot, t, slot):
    """Split a table's entries into units: single descriptors, or v7s CONT
    groups (``size`` > slot, aligned, all identical)."""
    entries = t.entries
    n = len(entries)
    i = 0
    out = []
    decode_cache = {}
    while i < n:
        pte = entries[i]
        info = decode_cache.get(pte)
        if info is None:
            info = _kind_of(snapshot, t.level, pte)
            decode_cache[pte] = info
        span = 1
        if info.kind not in ("invalid", "table") and info.size > slot:
            k = info.size // slot
            if i % k == 0 and i + k <= n and all(
                    entries[j] == pte for j in range(i, i + k)):
                span = k
        out.append((i, span, pte, info))
        i += span
    return out


def _partial(info, span, slot) -> bool:
    """A leaf descriptor that claims more than the entries it stands for:
    a member of a v7s CONT group that is not whole."""
    return info.kind not in ("invalid", "table") and info.size > span * slot


def _build_rows(snapshot, t, slot, prev_entries, new, marks):
    rows = []
    units = _units(snapshot, t, slot)
    cur = None   # [first, last, pte, info, units, span, changed, cached, stale]

    def flush():
        if cur is None:
            return
        first, last, pte, info, nunits, span, changed, cached, stale = cur
        child = info.addr if info.kind == "table" else None
        partial = _partial(info, span, slot)
        rows.append(Row(t.paddr, t.level, first, last, t.iova + first * slot,
                        slot, info.kind, info, pte, nunits, span, changed,
                        tuple(cached), tuple(stale), child,
                        child in snapshot.tables if child is not None
                        else False,
                        tuple(stale_note(e, _leaf_kind(snapshot, e))
                              for e in stale), partial))

    for (i, span, pte, info) in units:
        if new:
            changed = True
        elif prev_entries is None:
            changed = False
        else:
            changed = any(j >= len(prev_entries) or prev_entries[j]
                          != t.entries[j] for j in range(i, i + span))
        cached, stale = [], []
        for j in range(i, i + span):
            for e in marks.get((t.paddr, j), ()):
                lst = stale if e.stale else cached
                if e not in lst:
                    lst.append(e)
        joinable = False
        if cur is not None and not stale and not cur[8] \
                and cur[6] == changed and bool(cur[7]) == bool(cached) \
                and cur[5] == span:
            pinfo = cur[3]
            if info.kind == "invalid" and pinfo.kind == "invalid":
                joinable = pte == cur[2]
            elif _partial(info, span, slot) or _partial(pinfo, span, slot):
                joinable = (pte == cur[2] and _partial(info, span, slot)
                            and _partial(pinfo, span, slot))
            elif info.kind == pinfo.kind and info.kind != "table":
                # the previous unit's descriptor, for the address step
                prev_pte = t.entries[cur[1] - span + 1]
                prev_info = _kind_of(snapshot, t.level, prev_pte)
                joinable = (info.attrs == prev_info.attrs
                            and info.prot == prev_info.prot
                            and info.size == prev_info.size
                            and info.addr == prev_info.addr + prev_info.size
                            and pte - prev_pte == prev_info.size)
        if joinable:
            cur[1] = i + span - 1
            cur[4] += 1
            for e in cached:
                if e not in cur[7]:
                    cur[7].append(e)
        else:
            flush()
            cur = [i, i + span - 1, pte, info, 1, span, changed, cached,
                   stale]
    flush()
    return tuple(rows)


def tree_layout(snapshot, prev=None, tlb=()) -> TreeLayout:
    """The rows the tree views draw, computed once: tables in walk order
    (root first, then depth-first in entry order) followed by detached
    tables (allocated, not linked: e.g. the new table inside
    arm_lpae_split_blk_unmap before arm_lpae_install_table) by address."""
    order, parent = _reachable(snapshot)
    linked = set(order)
    detached = sorted(pa for pa in snapshot.tables if pa not in linked)
    marks, unplaced = _place_tlb(snapshot, tlb)
    views = []
    for pa in order + detached:
        t = snapshot.tables[pa]
        slot = slot_size(snapshot, t.level)
        prev_t = prev.tables.get(pa) if prev is not None else None
        new = prev is not None and prev_t is None
        rows = _build_rows(snapshot, t, slot,
                           prev_t.entries if prev_t is not None else None,
                           new, marks)
        views.append(TableView(pa, t.level, t.iova, len(t.entries), slot,
                               rows, pa not in linked, new, parent.get(pa)))
    freed = ()
    if prev is not None:
        freed = tuple(sorted(pa for pa in prev.tables
                             if pa not in snapshot.tables))
    digits = 8 if snapshot.fmt == "v7s" else 16
    return TreeLayout(snapshot.fmt, snapshot.granule, tuple(snapshot.levels),
                      snapshot.root, tuple(views), freed, tuple(unplaced),
                      digits)


# ---------------------------------------------------------------- DOT

def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _pte_hex(pte: int, digits: int) -> str:
    return f"0x{pte:0{digits}x}"


def _row_hex(row: Row, digits: int) -> str:
    h = _pte_hex(row.pte, digits)
    if row.partial and row.count > 1:
        return f"{h} x{row.count}"
    if row.kind in ("invalid", "table") or row.units == 1:
        return h
    per = "group" if row.unit_entries > 1 else "entry"
    return f"{h} +{hexaddr(row.info.size)}/{per}"


def _legend_html() -> str:
    cells = []
    for key in ("changed", "cached", "stale"):
        sym, colour, meaning = MARKS[key]
        fc = "white" if key == "stale" else "black"
        cells.append(
            f'<TR><TD BGCOLOR="{colour}"><FONT COLOR="{fc}"><B>{sym}</B>'
            f'</FONT></TD><TD ALIGN="LEFT">{_esc(meaning)}</TD></TR>')
    cells.append('<TR><TD BGCOLOR="' + GREY + '"> </TD><TD ALIGN="LEFT">'
                 'table header (level, address, iova range)</TD></TR>')
    cells.append('<TR><TD>- -</TD><TD ALIGN="LEFT">dashed border: detached '
                 'table (allocated, not linked)</TD></TR>')
    cells.append('<TR><TD><B>==</B></TD><TD ALIGN="LEFT">bold border: table '
                 'new since the previous step</TD></TR>')
    return ('<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" '
            'CELLPADDING="2"><TR><TD COLSPAN="2"><B>Legend</B></TD></TR>'
            + "".join(cells) + "</TABLE>")


def _node_html(tv: TableView, digits: int) -> str:
    head = f"<B>{_esc(tv.title)}</B>"
    sub = f"iova {hexaddr(tv.iova)}..{hexaddr(tv.iova_end)}"
    extra = []
    if tv.detached:
        extra.append("detached: not linked")
    if tv.new:
        extra.append("new")
    if tv.parent is not None:
        extra.append(f"from {hexaddr(tv.parent[0])}[{tv.parent[1]}]")
    lines = [head, _esc(sub)] + ([_esc(", ".join(extra))] if extra else [])
    hdr_bg = MARKS["changed"][1] if tv.new else GREY
    out = ['<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">',
           f'<TR><TD COLSPAN="4" BGCOLOR="{hdr_bg}">'
           + "<BR/>".join(lines) + "</TD></TR>"]
    for row in tv.rows:
        sym = row.marks.replace(" ", "") or " "
        mark_bg = ""
        mark_fc = "black"
        if row.stale:
            mark_bg = MARKS["stale"][1]
            mark_fc = "white"
        elif row.cached:
            mark_bg = MARKS["cached"][1]
        elif row.changed:
            mark_bg = MARKS["changed"][1]
        bg = f' BGCOLOR="{mark_bg}"' if mark_bg else ""
        # in a new table every entry is new: the header says so, and only
        # the mark column is filled, so the rows stay easy to read
        hot = row.changed and not tv.new
        body_bg = (f' BGCOLOR="{MARKS["changed"][1]}"' if hot else "")
        b0, b1 = ("<B>", "</B>") if hot else ("", "")
        desc = row.description
        if row.kind not in ("invalid", "table") and row.info.attrs:
            desc += f"  ({row.info.attrs})"
        out.append(
            f'<TR><TD{bg}><FONT COLOR="{mark_fc}"><B>{_esc(sym)}</B></FONT>'
            f'</TD><TD ALIGN="RIGHT"{body_bg}>{b0}{_esc(row.index_label)}{b1}'
            f'</TD><TD ALIGN="LEFT"{body_bg}>{b0}{_esc(desc)}{b1}</TD>'
            f'<TD ALIGN="LEFT" PORT="r{row.first}"{body_bg}>'
            f'<FONT FACE="Courier">{_esc(_row_hex(row, digits))}</FONT>'
            "</TD></TR>")
        for note in row.notes:
            out.append(
                f'<TR><TD BGCOLOR="{MARKS["stale"][1]}"><FONT COLOR="white">'
                f'<B>!</B></FONT></TD><TD COLSPAN="3" ALIGN="LEFT">'
                f'<FONT COLOR="{MARKS["stale"][1]}"><B>{_esc(note)}</B>'
                "</FONT></TD></TR>")
    out.append("</TABLE>")
    return "".join(out)


def tree_dot(snapshot, prev=None, tlb=(), title=None, legend=True,
             rankdir="TB") -> str:
    """DOT source of the page-table tree of ``snapshot``.

    ``prev`` (a PgtableSnapshot) highlights what changed; ``tlb`` (TlbEntry
    records, e.g. ``State.tlb``) marks cached and stale slots; ``title``
    goes on top; the legend is a node beside the deepest tables (pass
    ``legend=False`` to leave it out). ``rankdir`` "LR" puts levels left
    to right, "TB" top to bottom (narrower, for pages and READMEs).
    """
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir {rankdir!r} must be 'LR' or 'TB'")
    lay = tree_layout(snapshot, prev, tlb)
    lines = [
        "digraph pgtable {",
        f'  graph [rankdir={rankdir}, fontname="Helvetica", fontsize=11, '
        'nodesep=0.3, ranksep=0.6, labelloc=t, labeljust=l];',
        '  node [shape=box, margin=0, fontname="Helvetica", fontsize=10];',
        '  edge [arrowsize=0.7];',
    ]
    for tv in lay.tables:
        style = "dashed" if tv.detached else ("bold" if tv.new else "solid")
        pen = "2" if tv.new else "1"
        lines.append(f"  t{tv.paddr:x} [style={style}, penwidth={pen}, "
                     f"label=<{_node_html(tv, lay.pte_digits)}>];")
    for tv in lay.tables:
        for row in tv.rows:
            if row.kind == "table" and row.child_known:
                attrs = ""
                if row.changed:
                    attrs = " [penwidth=2]"
                tail, head = (":e", ":w") if rankdir == "LR" else ("", ":n")
                lines.append(f"  t{tv.paddr:x}:r{row.first}{tail} -> "
                             f"t{row.child:x}{head}{attrs};")
    label = []
    if title:
        label.append(f"<TR><TD ALIGN=\"LEFT\"><B>{_esc(title)}</B>"
                     "</TD></TR>")
    if lay.freed:
        label.append('<TR><TD ALIGN="LEFT">freed since the previous step: '
                     + _esc(", ".join(hexaddr(p) for p in lay.freed))
                     + "</TD></TR>")
    for e in lay.unplaced:
        label.append('<TR><TD ALIGN="LEFT">' + _esc(
            f"TLB entry off the tables: {size_str(e.size)} at "
            f"{hexaddr(e.iova)} -> {hexaddr(e.paddr)}") + "</TD></TR>")
    if legend:
        # a node of its own: inside the graph label it would be stretched
        # to the title's width; rank=sink keeps it with the deepest tables
        lines.append(f"  legend [shape=plaintext, margin=0, "
                     f"label=<{_legend_html()}>];")
        lines.append("  { rank=sink; legend; }")
    if label:
        lines.append('  label=<<TABLE BORDER="0" CELLSPACING="2">'
                     + "".join(label) + "</TABLE>>;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def tree_svg(snapshot, prev=None, tlb=(), title=None, legend=True,
             rankdir="TB") -> str:
    """The tree as SVG text, laid out by Graphviz ``dot``."""
    import graphviz
    dot = tree_dot(snapshot, prev, tlb, title, legend, rankdir)
    return graphviz.Source(dot).pipe(format="svg").decode("utf-8")


# ---------------------------------------------------------------- text

def tree_text(snapshot, prev=None, tlb=(), width=72) -> str:
    """The tree as plain text: ASCII, every line at most ``width`` columns.

    Each table is a header line, then one line per row: three mark
    columns (``*`` changed, ``T`` cached, ``!`` stale TLB entry), the
    index range and what the entries hold; leaves and tables add a line
    with the first descriptor in hex and its attributes.
    """
    lay = tree_layout(snapshot, prev, tlb)
    gran = size_str(snapshot.granule) if snapshot.granule else "?"
    lv = lay.levels
    out = [f"Page table: {lay.fmt}, {gran} granule, levels "
           f"{lv[0]}..{lv[-1]}, root {hexaddr(lay.root)}",
           "Marks: * changed  T cached in TLB  ! stale TLB entry"]
    for tv in lay.tables:
        flags = []
        if tv.new:
            flags.append("new")
        if tv.detached:
            flags.append("DETACHED, not linked")
        if tv.parent is not None:
            flags.append(f"from {hexaddr(tv.parent[0])}[{tv.parent[1]}]")
        out.append("")
        out.append(f"{tv.title}" + (f" ({', '.join(flags)})" if flags else ""))
        out.append(f"  iova {hexaddr(tv.iova)}..{hexaddr(tv.iova_end)}, "
                   f"{tv.entries} entries of {size_str(tv.slot)}")
        iw = max(len(r.index_label) for r in tv.rows)
        pad = " " * (4 + iw + 1)
        for row in tv.rows:
            out.append(f"{row.marks} {row.index_label:<{iw}} "
                       f"{row.description}")
            if row.kind != "invalid":
                extra = _row_hex(row, lay.pte_digits)
                if row.kind != "table" and row.info.attrs:
                    extra += ", " + row.info.attrs
                out.append(pad + "pte " + extra)
            for note in row.notes:
                out.append(pad + "! " + note)
    if lay.freed:
        out.append("")
        out.append("Freed since the previous step: "
                   + ", ".join(hexaddr(p) for p in lay.freed))
    for e in lay.unplaced:
        out.append(f"TLB entry off the tables: {size_str(e.size)} at "
                   f"{hexaddr(e.iova)} -> {hexaddr(e.paddr)}")
    return "\n".join(fit_lines(out, width)) + "\n"


# ---------------------------------------------------------------- faults
# Fault marks for a replayed log: kept apart from the views above, which
# they reuse unchanged (tree_dot's source gains notes, tree_text's output
# a section).

#: the colour of a fault note (Okabe-Ito vermillion)
FAULT_COLOUR = "#D55E00"


def fault_slot(snapshot, iova: int):
    """Where a walk of ``iova`` ends in ``snapshot``: ``(table paddr,
    index, level, kind)`` of the last descriptor it reads (``kind`` is
    ``'invalid'`` for a translation fault), or ``None`` when ``iova`` is
    outside the root table's range."""
    t = snapshot.tables.get(snapshot.root)
    while t is not None:
        slot = slot_size(snapshot, t.level)
        idx = (iova - t.iova) // slot
        if not 0 <= idx < len(t.entries):
            return None
        pte = t.entries[idx]
        kind = "invalid"
        if pte:
            info = _kind_of(snapshot, t.level, pte)
            kind = info.kind
            if kind == "table":
                nxt = snapshot.tables.get(info.addr)
                if nxt is None:
                    return (t.paddr, idx, t.level, kind)
                t = nxt
                continue
        return (t.paddr, idx, t.level, kind)
    return None


def _fault_label(f) -> str:
    verdict = getattr(f, "verdict", "") or ""
    where = f"line {f.line}: " if getattr(f, "line", None) else ""
    return f"{where}fault at {hexaddr(f.iova)}" + (
        f"\n{verdict}" if verdict else "")


def tree_dot_faults(snapshot, faults, prev=None, tlb=(), title=None,
                    legend=True, rankdir="TB", limit=20) -> str:
    """:func:`tree_dot` with each fault (an object with ``iova`` and, if it
    has them, ``line`` and ``verdict``, such as a replay's
    :class:`~iommu_viz.ingest.faults.Fault`) drawn as a note pointing at
    the entry a walk of its address ends on. At most ``limit`` notes; a
    fault outside the tables' range is listed under the title."""
    dot = tree_dot(snapshot, prev, tlb, title, legend, rankdir)
    if not faults:
        return dot
    lay = tree_layout(snapshot, prev, tlb)
    rows = {tv.paddr: tv.rows for tv in lay.tables}
    extra = []
    outside = []
    for k, f in enumerate(list(faults)[:limit]):
        slot = fault_slot(snapshot, f.iova)
        if slot is None or slot[0] not in rows:
            outside.append(f)
            continue
        pa, idx, _level, _kind = slot
        port = next((r.first for r in rows[pa] if r.first <= idx <= r.last),
                    None)
        label = _esc(_fault_label(f)).replace("\n", "<BR/>")
        extra.append(f'  fault{k} [shape=note, color="{FAULT_COLOUR}", '
                     f'fontcolor="{FAULT_COLOUR}", label=<{label}>];')
        head = f"t{pa:x}" + (f":r{port}" if port is not None else "")
        extra.append(f'  fault{k} -> {head} [color="{FAULT_COLOUR}", '
                     'style=dashed];')
    for f in outside:
        extra.append(f'  fault_out{len(extra)} [shape=note, '
                     f'color="{FAULT_COLOUR}", label=<'
                     + _esc(_fault_label(f) + " (outside the tables)")
                     .replace("\n", "<BR/>") + ">];")
    body = dot.rstrip()
    cut = body.rfind("}")          # the graph's closing brace
    return body[:cut] + "\n".join(extra) + "\n}\n"


def tree_text_faults(snapshot, faults, prev=None, tlb=(), width=72,
                     limit=20) -> str:
    """:func:`tree_text` followed by a "Faults" section: for each fault
    (see :func:`tree_dot_faults`), the table entry its address walks to
    and what that entry holds now."""
    out = tree_text(snapshot, prev, tlb, width)
    if not faults:
        return out
    lines = ["", "Faults (the entry each faulting address walks to):"]
    for f in list(faults)[:limit]:
        slot = fault_slot(snapshot, f.iova)
        head = _fault_label(f).replace("\n", ": ")
        if slot is None:
            lines.append(f"  {head}: outside the tables' range")
            continue
        pa, idx, level, kind = slot
        lines.append(f"  {head}")
        lines.append(f"    -> level {level} table {hexaddr(pa)}[{idx}]: "
                     f"{kind}")
    return out + "\n".join(fit_lines(lines, width)) + "\n"
