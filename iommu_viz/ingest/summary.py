"""Summarising a replay: the :class:`Summary` of what it did, the leaves
of the final table, and the table's mappings as runs and as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..pgtable.common import fmt_size, short_size
from ..pgtable.lpae import MAX_LEVELS, PTE_ADDR_MASK
from ..pgtable.v7s import (
    CONT_PAGES as V7S_CONT_PAGES, lvl_mask as v7s_lvl_mask,
    pte_is_cont as v7s_pte_is_cont,
)

__all__ = ["Summary", "count_leaves", "mapping_runs", "format_mappings",
           "ascii_text"]


def ascii_text(text: str) -> str:
    """``text`` with every character outside ASCII written as a
    backslash escape, so that what is printed is ASCII whatever the log
    held."""
    if text.isascii():
        return text
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _fold(line: str, width: int) -> list:
    """``line`` folded at spaces to ``width`` columns (continuations
    indented by four)."""
    out = []
    while len(line) > width:
        cut = line.rfind(" ", 0, width)
        if cut <= 4:
            cut = width
        out.append(line[:cut])
        line = "    " + line[cut:].lstrip()
    out.append(line)
    return out


@dataclass
class Summary:
    """What a replay did. Sizes are bytes; ``pages_mapped`` and ``leaves``
    map a page size to a count.

    * ``map_requests``/``unmap_requests``: iommu_map/iommu_unmap calls seen
      (a ``pr_debug`` request and its pieces count once);
    * ``pages_mapped``: pages installed by maps, by page size;
    * ``leaves``: leaf entries in the final table, by size;
    * ``blocks_split``: blocks replaced by a table on a partial unmap
      (v7s: sections replaced by a level-2 table, and 64K large pages or
      16M supersections rewritten as 16 entries by arm_v7s_split_cont);
    * ``unmatched_unmaps``: unmaps that found less mapped than they asked
      for, nothing or only part (``unmatched_bytes`` in all, the bytes
      asked for that were not mapped); ``partly_matched_unmaps`` is how
      many of them did find part of their range mapped;
    * ``refused_partial_unmaps``: partial unmaps of a block refused (v6.13);
    * ``rejected``: requests the model refused (misaligned, over a live
      mapping, beyond the address size);
    * ``tables_replaced``: block maps that replaced a table still holding
      pages (arm_lpae_init_pte frees it; those pages count as unmapped);
    * ``log_disagreements``: ftrace unmaps whose ``unmapped_size`` differs
      from what the model unmapped (a hint that the era, the granule or the
      start of the log is off);
    * ``peak_mapped`` and the log line where it was first reached;
    * ``mtk``: a v7s table with mtk_iommu's quirks;
    * ``rejoined``: lines of mail-wrapped events joined to the line before
      them (the event keeps the first line's number);
    * ``fault_lines``: lines of fault reports; ``faults``: the faults on an
      address, each a :class:`~.faults.Fault` that says what the replay
      knew of the address when it came.

    Every line is counted once: ``lines == events + fault_lines + skipped
    + malformed + rejoined``.
    """

    fmt: str
    granule: int
    kernel: str
    ias: int
    lines: int = 0
    events: int = 0
    skipped: int = 0
    malformed: int = 0
    device: str | None = None
    map_requests: int = 0
    unmap_requests: int = 0
    mapped_bytes: int = 0
    unmapped_bytes: int = 0
    pages_mapped: dict = field(default_factory=dict)
    leaves: dict = field(default_factory=dict)
    blocks_split: int = 0
    unmatched_unmaps: int = 0
    unmatched_bytes: int = 0
    refused_partial_unmaps: int = 0
    rejected: int = 0
    tables_replaced: int = 0
    log_disagreements: int = 0
    peak_mapped: int = 0
    peak_line: int = 0
    mapped: int = 0
    tables: int = 0
    tlb_calls: dict = field(default_factory=dict)
    mtk: bool = False
    partly_matched_unmaps: int = 0
    rejoined: int = 0
    fault_lines: int = 0
    faults: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict (page sizes as ``'4K'``-style keys)."""
        d = dict(self.__dict__)
        d["pages_mapped"] = {short_size(k): v for k, v in
                             sorted(self.pages_mapped.items())}
        d["leaves"] = {short_size(k): v for k, v in sorted(self.leaves.items())}
        d["tlb_calls"] = dict(sorted(self.tlb_calls.items()))
        d["faults"] = [f.to_dict() for f in self.faults]
        return d

    def fault_counts(self) -> dict:
        """How many faults got each verdict."""
        out = {}
        for f in self.faults:
            out[f.verdict] = out.get(f.verdict, 0) + 1
        return out

    def __str__(self):
        def sizes(d):
            if not d:
                return "none"
            return ", ".join(f"{short_size(k)} x {v}" for k, v in sorted(d.items()))

        def wrap(label, text):
            out, cur = [], label
            for part in text.split(", "):
                add = part if cur == label else ", " + part
                if len(cur) + len(add) > 72 and cur != label:
                    out.append(cur + ",")
                    cur = " " * len(label) + part
                else:
                    cur += add
            out.append(cur)
            return out

        dev = f", device {self.device}" if self.device else ""
        name = self.fmt.upper() + ("+MTK" if self.mtk else "")
        lines = [
            f"replay: {name} {short_size(self.granule)} granule, "
            f"{self.ias}-bit iova, kernel {self.kernel} era{dev}",
            f"log: {self.lines} lines, {self.events} iommu events, "
            f"{self.skipped} other lines, {self.malformed} malformed",
            f"map requests      {self.map_requests:>10}  "
            f"{fmt_size(self.mapped_bytes) if self.mapped_bytes else '0'} mapped",
            f"unmap requests    {self.unmap_requests:>10}  "
            f"{fmt_size(self.unmapped_bytes) if self.unmapped_bytes else '0'}"
            " unmapped",
        ]
        lines += wrap("pages mapped:     ", sizes(self.pages_mapped))
        lines += wrap("leaves now:       ", sizes(self.leaves))
        lines += [
            f"blocks split      {self.blocks_split:>10}",
            f"unmatched unmaps  {self.unmatched_unmaps:>10}"
            + (f"  {fmt_size(self.unmatched_bytes)} not mapped"
               if self.unmatched_bytes else "")
            + (f", {self.partly_matched_unmaps} partly"
               if self.partly_matched_unmaps else ""),
            f"refused partial   {self.refused_partial_unmaps:>10}  "
            "(partial unmaps of a block, v6.13)",
            f"rejected requests {self.rejected:>10}",
        ]
        if self.tables_replaced:
            lines.append(f"tables replaced   {self.tables_replaced:>10}  "
                         "(a block map freed a table with pages)")
        lines += [
            f"log disagreements {self.log_disagreements:>10}  "
            "(unmapped_size differs from the model)",
            f"peak mapped       {fmt_size(self.peak_mapped) if self.peak_mapped else '0':>10}"
            + (f"  at line {self.peak_line}" if self.peak_mapped else ""),
            f"mapped now        {fmt_size(self.mapped) if self.mapped else '0':>10}"
            f"  in {self.tables} tables",
        ]
        tlb = ", ".join(f"{k} {v}" for k, v in sorted(self.tlb_calls.items()))
        lines += wrap("tlb calls:        ", tlb or "none")
        lines.append(f"rejoined lines    {self.rejoined:>10}  "
                     "(mail-wrapped lines joined back)")
        counts = self.fault_counts()
        faults = ", ".join([f"{len(self.faults)} in {self.fault_lines} lines"]
                           + [f"{n} {v}" for v, n in sorted(counts.items())])
        lines += wrap("faults:           ",
                      faults if self.fault_lines else "none")
        return ascii_text("\n".join(lines))

    def faults_text(self, limit=10, width=72) -> str:
        """The faults section: each fault's report and verdict, at most
        ``limit`` of them, lines cut to ``width``."""
        if not self.faults:
            return "faults: none"
        out = [f"faults ({len(self.faults)}"
               + (f", first {limit}" if len(self.faults) > limit else "")
               + "):"]
        for f in self.faults[:limit]:
            for ln in f.explain().splitlines():
                out.extend(_fold("  " + ln, width))
        return ascii_text("\n".join(out))



def count_leaves(table, fmt, mapped) -> dict:
    """Leaf entries of ``table`` by size, as a walk of
    :meth:`LpaeTable.mappings` would count them.

    Counted per table instead of per leaf: a non-zero entry of a
    last-level table is a page; one of a higher table is a block or
    points to a table one level down, and each table but the pgd has
    one such entry (arm_lpae_install_table). The count is used only
    when its bytes add up to what the replay kept as mapped; otherwise
    (or if the table does not expose its tables) the leaves are walked.
    """
    if fmt != "lpae":
        # v7s: a CONT group is 16 identical entries and one leaf, so
        # counting non-zero entries would not do; its tables are
        # small (at most 4096 + 256 a table), walk them
        return _walked_leaves(table)
    try:
        nonzero: dict[int, int] = {}
        below: dict[int, int] = {}
        for t in table._tables.values():
            ptes = t.ptes
            lvl = t.level
            nonzero[lvl] = nonzero.get(lvl, 0) + len(ptes) - ptes.count(0)
            if t is not table.pgd:
                below[lvl - 1] = below.get(lvl - 1, 0) + 1
        leaves = {}
        for lvl, n in nonzero.items():
            n -= below.get(lvl, 0)
            if n < 0:
                raise ValueError(lvl)
            if n:
                size = table.block_size(lvl)
                leaves[size] = leaves.get(size, 0) + n
        if sum(k * v for k, v in leaves.items()) == mapped:
            return dict(sorted(leaves.items()))
    except (AttributeError, ValueError):
        pass
    return _walked_leaves(table)


def _walked_leaves(table) -> dict:
    leaves = {}
    for _iova, _pa, size, _lvl, _pte in table.mappings():
        leaves[size] = leaves.get(size, 0) + 1
    return dict(sorted(leaves.items()))


#: How :func:`mapping_runs` names v7s leaves (V7sTable.describe's kinds).
_V7S_KINDS = {"page": "page", "large": "large page", "section": "section",
              "supersection": "supersection"}


def _v7s_attrs(pte, level):
    """A v7s leaf's bits other than its output address (the MediaTek
    address bits stay in: runs do not cross them)."""
    mask = v7s_lvl_mask(level)
    if v7s_pte_is_cont(pte, level):
        mask = (mask * V7S_CONT_PAGES) & 0xFFFFFFFF
    return pte & ~mask


def mapping_runs(table):
    """The leaves of ``table`` as runs ``(iova, paddr, size, count, kind)``:
    leaves of one size, consecutive in iova and in paddr, with the same
    attributes, in iova order. ``kind`` is ``'page'`` or ``'block'`` for
    LPAE; ``'page'``, ``'large page'``, ``'section'`` or
    ``'supersection'`` for v7s. Reads the table's ``mappings()`` only."""
    runs = []
    cur = None
    v7s = getattr(table, "fmt", "lpae") == "v7s"
    for iova, pa, size, level, pte in table.mappings():
        attrs = _v7s_attrs(pte, level) if v7s else pte & ~PTE_ADDR_MASK
        if cur is not None and cur[2] == size and cur[0] + cur[3] * size == iova \
                and cur[1] + cur[3] * size == pa and cur[5] == attrs:
            cur[3] += 1
            continue
        if v7s:
            kind = _V7S_KINDS[table.describe(level, pte).kind]
        else:
            kind = "page" if level == MAX_LEVELS - 1 else "block"
        cur = [iova, pa, size, 1, kind, attrs]
        runs.append(cur)
    return [tuple(r[:5]) for r in runs]


def format_mappings(table, max_rows=None, width=72) -> str:
    """The leaves of ``table`` as plain text, one row per run (see
    :func:`mapping_runs`)::

        0x000040000000-0x0000401fffff -> 0x000080000000    512 x 4K page

    ``max_rows`` caps the rows (a last line says how many runs were left
    out). A stand-in for the text tree renderer.
    """
    runs = mapping_runs(table)
    ndig = max(8, (getattr(table, "ias", 48) + 3) // 4)
    pdig = max(8, (getattr(table, "oas", 48) + 3) // 4)
    out = [f"{'iova range':<{2 * ndig + 5}} -> {'paddr':<{pdig + 2}} "
           f"{'pages':>6}"]
    shown = runs if max_rows is None else runs[:max_rows]
    for iova, pa, size, n, kind in shown:
        end = iova + n * size - 1
        out.append(f"0x{iova:0{ndig}x}-0x{end:0{ndig}x} -> 0x{pa:0{pdig}x} "
                   f"{n:>6} x {short_size(size)} {kind}")
    if len(shown) < len(runs):
        rest = runs[len(shown):]
        out.append(f"... {len(rest)} more runs ({sum(r[3] for r in rest)} "
                   "leaves) not shown")
    if not runs:
        out.append("(nothing mapped)")
    return "\n".join(line[:width] for line in out)
