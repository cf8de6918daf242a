"""The recorded run: the clock, events and the state after each of them.

Everything the views show is read from these immutable records; nothing
reaches into the live model. An :class:`Event` says who acted (``actor``),
which kernel function or hardware rule acted (``func``), what happened
(``kind``, ``detail``) and a one-line ``text`` caption. After every event the
:class:`Recorder` keeps a :class:`State`. Every layer reports to the one
recorder of its run, as the kernel's code reports to its tracepoints.

Actors, which are also the timeline's swim-lanes:

``cpu``      the IOMMU API caller and io-pgtable writing descriptors
``cmdq``     the SMMU command queue: TLBI and CMD_SYNC issued and completed
``tlb``      the SMMU TLB and walk cache: fills, evictions, invalidations
``device``   DMA accesses by the device
``fq``       the lazy flush queue (dma-iommu / iova.c)
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACTORS = ("cpu", "cmdq", "tlb", "device", "fq")

#: Outcomes of a device access, worst first (the order ``adversarial`` uses).
OUTCOMES = ("stale", "conflict", "fault", "translated")


@dataclass(frozen=True)
class Event:
    """One recorded step of a run.

    ``step`` is the event's index in the run, ``time_us`` the logical time
    in microseconds, ``op`` the index of the API call that caused it.
    """

    step: int
    time_us: int
    op: int
    actor: str
    kind: str
    func: str
    text: str
    detail: dict = field(default_factory=dict, compare=True, hash=False)

    @property
    def time_ms(self) -> float:
        return self.time_us / 1000.0

    def __str__(self):
        return f"[{self.step:3d}] {self.time_ms:8.3f} ms {self.actor:6s} {self.text}"


@dataclass(frozen=True)
class TlbEntry:
    """A cached translation (SMMUv3 3.20-3.21: tagged by ASID, block-aligned
    input address, size and level; a block is one entry).

    ``stale_ranges`` are the ``(iova, size)`` parts of the entry that no
    longer match the page tables (empty when the entry is current);
    ``pending`` is True while an issued but not yet synced invalidation
    targets it; ``inserted`` is the step it was filled at.
    """

    asid: int
    iova: int
    size: int
    level: int
    paddr: int
    prot: int
    pte: int
    inserted: int
    speculative: bool = False
    stale_ranges: tuple = ()
    pending: bool = False

    @property
    def stale(self) -> bool:
        return bool(self.stale_ranges)

    def covers(self, iova: int) -> bool:
        return self.iova <= iova < self.iova + self.size


@dataclass(frozen=True)
class WalkCacheEntry:
    """A cached intermediate (table) descriptor: walks of ``[iova, iova +
    size)`` may start at ``table`` (the next level's table) without reading
    the levels above. ``stale`` when that table is no longer linked in."""

    asid: int
    iova: int
    size: int
    level: int
    table: int
    stale: bool = False
    pending: bool = False


@dataclass(frozen=True)
class Command:
    """An SMMU command (SMMUv3 4.4, 4.7) as queued: ``op`` is the
    command's name (``CMD_TLBI_NH_VA``, ``CMD_TLBI_NH_ASID``,
    ``CMD_TLBI_S2_IPA``, ``CMD_SYNC``) and ``fields`` its operands."""

    seq: int
    op: str
    fields: tuple = ()     # ((name, value), ...)
    issued: int = 0        # step it was issued at

    def get(self, name, default=None):
        for k, v in self.fields:
            if k == name:
                return v
        return default

    def __str__(self):
        parts = []
        for k, v in self.fields:
            if isinstance(v, bool):
                parts.append(f"{k}={int(v)}")
            elif k in ("addr",):
                parts.append(f"{k}=0x{v:x}")
            else:
                parts.append(f"{k}={v}")
        return self.op + (" " + " ".join(parts) if parts else "")


@dataclass(frozen=True)
class FqEntry:
    """An IOVA range waiting in the lazy flush queue since ``queued_us``."""

    iova: int
    size: int
    queued_us: int


@dataclass(frozen=True)
class Hazard:
    """A window the architecture opens: ``kind`` is ``'stale'`` (a cached
    translation reaches memory the tables no longer map there) or
    ``'conflict'`` (two cached entries overlap; a TLB conflict is allowed).
    """

    kind: str
    iova: int
    size: int
    reason: str


@dataclass(frozen=True)
class GatherState:
    """An iommu_iotlb_gather as the API holds it (v5.4+)."""

    id: int
    start: int
    end: int
    pgsize: int
    queued: bool = False


@dataclass(frozen=True)
class State:
    """Everything the views may show after one step."""

    step: int
    time_us: int
    pgtable: object            # PgtableSnapshot
    tlb: tuple                 # TlbEntry, in replacement order (oldest first)
    walk_cache: tuple          # WalkCacheEntry
    pending: tuple             # Command issued but not yet completed
    flush_queue: tuple         # FqEntry
    gathers: tuple             # GatherState of open gathers
    hazards: tuple             # Hazard
    fq_deadline_us: int | None = None

    @property
    def stale_entries(self):
        return tuple(e for e in self.tlb if e.stale)


class Clock:
    """Logical time in microseconds; only the Simulation moves it."""

    __slots__ = ("now_us",)

    def __init__(self):
        self.now_us = 0


class Recorder:
    """The run's record: ``ops`` (the API calls, each a dict that
    ``Simulation.from_ops`` replays), ``events`` and ``states`` (one per
    event). ``state_of(step)`` makes the State kept after each event; it
    is set once every layer is wired. Nothing is kept while ``on`` is
    False (the domain's own set-up)."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.ops: list[dict] = []
        self.events: list[Event] = []
        self.states: list[State] = []
        self.op = -1
        self.on = True
        self.state_of = None

    def begin(self, op: dict) -> None:
        """An API call starts: later events belong to it."""
        self.op = len(self.ops)
        self.ops.append(op)

    @property
    def next_step(self) -> int:
        """The step the next event will have."""
        return len(self.events)

    def emit(self, actor, kind, func, text, **detail) -> None:
        if not self.on:
            return
        ev = Event(len(self.events), self.clock.now_us, self.op, actor, kind,
                   func, text, detail)
        self.events.append(ev)
        self.states.append(self.state_of(ev.step))

    def pgtable_event(self, describe, func, kind, d) -> None:
        """One call of io-pgtable's trace hook as a ``cpu`` event with a
        caption; ``describe(level, pte)`` decodes a descriptor."""
        if kind == "pte_write":
            lvl = d["level"]
            new = d["new"]
            what = f"{d['count']} entries" if d["count"] > 1 else "entry"
            if not new:
                text = (f"clear {what} [{d['index']}] of L{lvl} table "
                        f"0x{d['table']:x} (iova 0x{d['iova']:x})")
            else:
                info = describe(lvl, new)
                if info.kind == "table":
                    text = (f"install table 0x{info.addr:x} at L{lvl} "
                            f"[{d['index']}] (iova 0x{d['iova']:x})")
                    if d["old"]:
                        text += f", replacing descriptor 0x{d['old']:x}"
                else:
                    text = (f"write {what} [{d['index']}] of L{lvl} table: "
                            f"{info.kind} 0x{d['iova']:x} -> 0x{info.addr:x}")
        elif kind == "table_fill":
            skip = d["skipped"]
            text = (f"fill new L{d['level']} table 0x{d['table']:x} with "
                    f"{d['count'] - (skip >= 0)} entries from the block"
                    + (f", leaving [{skip}] empty" if skip >= 0 else ""))
        elif kind == "table_alloc":
            text = f"allocate L{d['level']} table at 0x{d['table']:x}"
        elif kind == "table_free":
            text = f"free L{d['level']} table 0x{d['table']:x}"
        elif kind == "warn":
            text = f"WARNING: {d['message']}"
        else:
            return
        self.emit("cpu", kind, func, text, **d)
