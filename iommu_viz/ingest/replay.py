"""Replay a real log of IOMMU map/unmap activity into a page-table model.

Each event is applied to an :class:`~iommu_viz.pgtable.lpae.LpaeTable`
(``fmt="lpae"``, io-pgtable-arm) or a
:class:`~iommu_viz.pgtable.v7s.V7sTable` (``fmt="v7s"``, the Armv7
short-descriptor format of io-pgtable-arm-v7s, as 32-bit IOMMUs such as
MediaTek's M4U use it) the way drivers/iommu/iommu.c applies a request to
the page-table code:

* an ftrace ``iommu:map`` (a whole iommu_map() request) or an unlinked
  ``pr_debug`` ``map:`` request is cut into page sizes by iommu_pgsize()
  (the v5.14+ form, which also counts runs of one size; the page sizes are the
  same as v5.4's) and handed to the table run by run, as __iommu_map does; if
  a run is refused, what was mapped is unmapped again, as iommu_map's clean-up
  does, and the request counts as *rejected*. ``pr_debug`` ``mapping:`` pieces
  are applied as logged (the request line above them is then only counted);
* an ftrace ``iommu:unmap``, a ``pr_debug`` ``unmapped:`` piece or an
  unlinked ``unmap this:`` request runs the loop of __iommu_unmap: the largest
  page size that fits, until the size is done or nothing more is mapped.

The log is read and applied a block at a time (:class:`~.parse.LogStream`):
memory grows with the mapped state (the table, and the last unmap seen at
each iova, kept to explain faults), not with the log; the events are kept
as well (``Replay.events``) only for inputs under 8 MiB or with
``keep_events=True``.

Fault reports in the log (AMD-Vi, arm-smmu-v3, arm-smmu, Intel VT-d,
MediaTek, the io_page_fault tracepoint: see :mod:`.faults`) are explained
where they occur: the address was mapped, never mapped, or unmapped at
some line before ("use after unmap", see :mod:`.explain`).

Requests misaligned to the granule are refused as __iommu_map/__iommu_unmap
refuse them (-EINVAL); the model's own :class:`PgtableError` refusals
(EEXIST when the log maps over a live mapping, ERANGE beyond the address size)
are counted too, with their line number, and never stop the replay. Logs do
not record permissions, so every mapping is ``IOMMU_READ | IOMMU_WRITE``.

The kernel era decides what a partial unmap of a block does: v4.20 to
v6.12 split it (arm_lpae_split_blk_unmap; for v7s arm_v7s_split_cont for a
64K large page or 16M supersection and arm_v7s_split_blk_unmap for a 1M
section), v6.13 refuses it and unmaps nothing (33729a5fc0ca for LPAE,
fd50651636fb for v7s); the summary counts both (*blocks split*, *refused
partial unmaps*). A v7s section split keeps the kernel's bug: the
remaining pages lose the section's output address (see
:mod:`iommu_viz.pgtable.v7s`), so the replayed mappings show them at
physical 0x0 onwards, as the kernel's table would.

The v7s input address is 32 bits (``ARM_V7S_ADDR_BITS``); ``mtk=True``
models mtk_iommu's quirks (``ARM_NS | NO_PERMS | ARM_MTK_EXT``): physical
addresses up to 34 bits (v5.4) or 35 (v5.12+), and from v5.12 an iova of
up to 34 bits with ``ias=34``. An event that does not fit is refused with
its line number (ERANGE), like any other refusal.

Example::

    >>> from iommu_viz.ingest import replay
    >>> r = replay(["map: IOMMU: iova=0x40000000 paddr=0x80000000 size=2097152",
    ...             "unmap: IOMMU: iova=0x40001000 size=4096 unmapped_size=4096"])
    >>> r.summary.blocks_split, r.summary.pages_mapped
    (1, {2097152: 1})
    >>> hex(r.table.iova_to_phys(0x40002000))
    '0x80002000'
"""

from __future__ import annotations

import copy
import os

from ..pgtable.common import SZ_4K, check_kernel, era_at_least, fmt_size, \
    short_size
from ..pgtable.v7s import ADDR_BITS as V7S_ADDR_BITS
from .engine import MAX_REJECTED, _Engine
from .eventlog import EventLog
from .explain import explain_fault
from .lines import is_log_text
from .parse import LogStream
from .progress import make_progress
from .summary import Summary, count_leaves, format_mappings, mapping_runs
from .tables import CountingFlushOps

__all__ = ["replay", "Replay", "Summary", "CountingFlushOps",
           "format_mappings", "mapping_runs", "FORMATS", "MAX_REJECTED"]

#: Page-table formats replay can drive.
FORMATS = ("lpae", "v7s")
#: The granules each format has.
_GRANULES = {"lpae": (SZ_4K, 1 << 14, 1 << 16), "v7s": (SZ_4K,)}
#: Inputs at least this big get an automatic progress bar, and their
#: events are not kept.
_BIG_BYTES = 8 << 20


class _Run:
    """One pass over a log: segments applied in order, each fault
    explained at its place among the events, and the table copied after
    ``at`` events when asked."""

    def __init__(self, engine, stream, at=None, keep=False):
        self.engine = engine
        self.stream = stream
        self.at = at
        self.snap = None
        ev = stream.parsed.events       # its device names are the log's
        self.kept = EventLog(ev.devices, ev._dev_index) if keep else None
        self.faults = []
        self.base = 0           # global index of the segment's first event
        self._fi = 0            # faults explained so far

    def _apply(self, seg, lo, hi):
        at = self.at
        if at is not None and self.snap is None and \
                self.base + lo <= at <= self.base + hi:
            k = at - self.base
            self.engine.apply(seg, lo, k)
            self.snap = copy.deepcopy(self.engine.table)
            lo = k
        self.engine.apply(seg, lo, hi)

    def _faults_upto(self, seg, lo, limit):
        """Explain the faults placed at or before global event ``limit``,
        applying the events of ``seg`` before each; returns where the
        segment got to."""
        p = self.stream.parsed
        fa, fl = p.fault_at, p.faults
        while self._fi < len(fa) and fa[self._fi] <= limit:
            k = max(lo, fa[self._fi] - self.base)
            if seg is not None and k > lo:
                self._apply(seg, lo, k)
                lo = k
            self.faults.append(explain_fault(self.engine, fl[self._fi],
                                             fa[self._fi]))
            self._fi += 1
        return lo

    def run(self):
        for seg in self.stream:
            n = len(seg)
            lo = self._faults_upto(seg, 0, self.base + n)
            self._apply(seg, lo, n)
            self.base += n
            if self.kept is not None:
                self.kept.extend(seg)
        self._faults_upto(None, 0, self.base)
        if self.at is not None and self.snap is None and self.at <= self.base:
            self.snap = copy.deepcopy(self.engine.table)
        return self.stream.parsed


class Replay:
    """The result of :func:`replay`.

    ``summary`` (:class:`Summary`), ``table`` (the final
    :class:`~iommu_viz.pgtable.lpae.LpaeTable` or
    :class:`~iommu_viz.pgtable.v7s.V7sTable`), ``events`` (the parsed
    :class:`~iommu_viz.ingest.eventlog.EventLog`, or ``None`` when they
    were not kept), ``problems`` (malformed lines,
    :class:`~iommu_viz.ingest.formats.Problem`), ``rejected`` (``(line,
    message)`` for requests the model refused), ``faults`` (the fault
    reports explained, :class:`~iommu_viz.ingest.faults.Fault`),
    ``tlb_calls`` (counts), ``table_after`` (the table after the first
    ``at`` events, when :func:`replay` was given ``at``).
    """

    def __init__(self, parsed, engine, settings, run=None, source=None):
        self.parsed = parsed
        self.events = run.kept if run is not None else None
        self.problems = parsed.problems
        self.table = engine.table
        self.rejected = engine.rejects
        self.settings = settings
        self.table_after = run.snap if run is not None else None
        self._source = source
        self.summary = self._summarise(engine, run)
        self.faults = self.summary.faults

    def _summarise(self, e, run) -> Summary:
        s = self.settings
        p = self.parsed
        return Summary(
            fmt=s["fmt"], granule=s["granule"], kernel=s["kernel"],
            ias=s["ias"], lines=p.lines,
            events=run.base if run is not None else len(p.events),
            skipped=p.skipped, malformed=p.malformed, device=s["device"],
            map_requests=e.map_requests, unmap_requests=e.unmap_requests,
            mapped_bytes=e.mapped_bytes, unmapped_bytes=e.unmapped_bytes,
            pages_mapped=dict(sorted(e.pages.items())),
            leaves=count_leaves(e.table, e.fmt, e.mapped),
            blocks_split=e.splits, unmatched_unmaps=e.unmatched,
            unmatched_bytes=e.unmatched_bytes,
            refused_partial_unmaps=e.refused, rejected=e.rejected,
            tables_replaced=e.replaced,
            log_disagreements=e.disagreements, peak_mapped=e.peak,
            peak_line=e.peak_line, mapped=e.mapped,
            tables=self.table.table_count,
            tlb_calls=dict(sorted(e.tlb.counts.items())), mtk=s["mtk"],
            partly_matched_unmaps=e.partly, rejoined=p.rejoined,
            fault_lines=p.fault_lines,
            faults=list(run.faults) if run is not None else [])

    @property
    def tlb_calls(self) -> dict:
        return self.summary.tlb_calls

    def _engine(self):
        s = self.settings
        return _Engine(s["granule"], s["kernel"], s["ias"], s["device"],
                       s["fmt"], s["mtk"])

    def table_at(self, n: int):
        """A fresh table holding the state after the first ``n`` events
        (0 .. ``summary.events``), replayed again from the start (from
        the kept events, or by reading the file again); the same ``n``
        always gives the same table."""
        total = self.summary.events
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= total:
            raise ValueError(f"event count {n!r} is out of range: the log has "
                             f"{total} events (0..{total})")
        if self.events is not None:
            e = self._engine()
            e.apply(self.events, 0, n)
            return e.table
        src = self._source
        if isinstance(src, (str, os.PathLike)) and not is_log_text(src):
            s = self.settings
            return replay(src, s["granule"], s["kernel"], s["fmt"], s["ias"],
                          False, s["device"], s["mtk"], False, n).table_after
        raise ValueError("the events of this replay were not kept (a big "
                         "input read once); replay with keep_events=True or "
                         "at=N, or from a file")

    def mappings_text(self, max_rows=None) -> str:
        """The final table's mappings as text (see :func:`format_mappings`)."""
        return format_mappings(self.table, max_rows=max_rows)

    def __repr__(self):
        s = self.summary
        return (f"<Replay {s.events} events, {s.kernel} era, "
                f"{short_size(s.granule)} granule, {fmt_size(s.mapped) if s.mapped else '0'}"
                " mapped>")


def _check_settings(granule, kernel, fmt, ias, mtk) -> int:
    """Check the settings; returns the ias to use (``None``: 48 for LPAE,
    32 for v7s)."""
    check_kernel(kernel)
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"page-table format {fmt!r} cannot be replayed; "
                         "choose one of " + ", ".join(map(repr, FORMATS)))
    if granule not in _GRANULES[fmt]:
        shown = f"{granule:#x}" if isinstance(granule, int) else repr(granule)
        if fmt == "v7s":
            raise ValueError(f"granule {shown} is not a v7s granule; the "
                             "short-descriptor format has 4K pages only")
        raise ValueError(f"granule {shown} is not an LPAE granule; "
                         "choose 4K, 16K or 64K")
    if not isinstance(mtk, bool):
        raise ValueError(f"mtk {mtk!r} must be True or False")
    if fmt == "lpae":
        if mtk:
            raise ValueError("the mtk quirk (mtk_iommu's ARM_MTK_EXT) is "
                             "for v7s tables; an LPAE table has no such "
                             "quirk")
        if ias is None:
            return 48
        if type(ias) is not int or not 32 <= ias <= 48:
            raise ValueError(f"ias {ias!r} is out of range; the model takes "
                             "32 to 48 bits")
        return ias
    # v7s: ARM_V7S_ADDR_BITS; mtk_iommu's 34-bit iova needs the MT8192
    # series (v5.12), so the v6.12 and v6.13 eras
    top = 34 if mtk and era_at_least(kernel, (5, 12)) else V7S_ADDR_BITS
    if ias is None:
        return V7S_ADDR_BITS
    if type(ias) is not int or not V7S_ADDR_BITS <= ias <= top:
        why = ("with the mtk quirk in the v6.12 and v6.13 eras, 32 to 34 "
               "bits" if top > V7S_ADDR_BITS else
               "v7s takes a 32-bit iova (33 or 34 bits only with the mtk "
               "quirk, from the v6.12 era)")
        raise ValueError(f"ias {ias!r} is out of range; {why}")
    return ias


def _source_is_big(source) -> bool:
    if is_log_text(source):
        return len(source) >= _BIG_BYTES
    if isinstance(source, (str, os.PathLike)):
        try:
            return os.path.getsize(source) >= _BIG_BYTES
        except OSError:
            return False
    if hasattr(source, "fileno"):
        try:
            return os.fstat(source.fileno()).st_size >= _BIG_BYTES
        except (OSError, ValueError):
            return False
    try:
        return len(source) >= _BIG_BYTES // 100
    except TypeError:
        return False


def replay(source, granule=SZ_4K, kernel="v5.4", fmt="lpae", ias=None,
           progress=None, device=None, mtk=False, keep_events=None,
           at=None) -> Replay:
    """Parse ``source`` (a path, a file object, a str holding a log's text,
    or an iterable of lines) and replay its iommu map/unmap events into a
    fresh page table, explaining the fault reports on the way.

    ``fmt`` (``"lpae"`` or ``"v7s"``), ``granule`` (LPAE: 4K, 16K or 64K;
    v7s: 4K), ``kernel`` (era: ``"v4.20"``, ``"v5.4"``, ``"v6.12"``,
    ``"v6.13"``) and ``ias`` (input address bits; default 48 for LPAE,
    32 to 48; v7s: 32, up to 34 with ``mtk`` from the v6.12 era) pick the
    table; ``mtk`` (v7s only) gives it mtk_iommu's quirks (ARM_NS,
    NO_PERMS, ARM_MTK_EXT: physical addresses above 4 GiB).
    ``device`` keeps only the events whose ``dev=`` is that name.
    ``progress``: see :mod:`iommu_viz.ingest.progress` (default: a bar for
    big inputs in Jupyter or on a terminal). ``keep_events``: keep the
    parsed events in ``Replay.events`` (default: for inputs under 8 MiB).
    ``at``: also keep a copy of the table after the first ``at`` events
    (``Replay.table_after``).

    Raises ``ValueError`` for bad settings and ``OSError`` when the file
    cannot be read; the log's content never raises (see ``problems``,
    ``rejected``, ``faults`` and the summary).
    """
    ias = _check_settings(granule, kernel, fmt, ias, mtk)
    if at is not None and (type(at) is not int or at < 0):
        raise ValueError(f"at {at!r} must be an event count (0 or more)")
    big = _source_is_big(source)
    if keep_events is None:
        keep_events = not big
    bar = make_progress(progress, big)
    settings = dict(granule=granule, kernel=kernel, fmt=fmt, ias=ias,
                    device=device, mtk=mtk)
    engine = _Engine(granule, kernel, ias, device, fmt, mtk)
    run = _Run(engine, LogStream(source, progress=bar), at, keep_events)
    parsed = run.run()
    if device is not None and device not in parsed.events._dev_index:
        names = [d for d in parsed.events.devices if d is not None]
        raise ValueError(
            f"device {device!r} does not appear in the log; it names "
            + (", ".join(map(repr, names)) if names else "no devices"))
    if bar is not None:
        bar.start("replay", run.base)
        bar.update(run.base)
        bar.close()
    if at is not None and at > run.base:
        raise ValueError(f"at {at} is beyond the log's {run.base} events")
    return Replay(parsed, engine, settings, run, source)

