"""IOMMU fault reports in the formats the kernel prints them, and what the
replay knew of the faulting address at that moment.

Formats read (sources, per kernel version, in ``docs/kernel-facts.md``,
"Fault reports"):

* ``amd-trace``: the ``iommu:io_page_fault`` tracepoint that
  report_iommu_fault() (drivers/iommu/iommu.c) fires for any driver that
  reports through it: ``io_page_fault: IOMMU:DRIVER DEVICE iova=0x...
  flags=0x...`` (include/trace/events/iommu.h);
* ``amd-vi``: AMD-Vi's ``Event logged [IO_PAGE_FAULT ...]``, with
  ``device=BB:DD.F`` (``SSSS:BB:DD.F`` from v5.19) when the device is not
  known, else behind the device's name (pci_err); ``address=0x...``;
  ``flags`` bit 5 is a write (drivers/iommu/amd/iommu.c);
* ``smmu-v3``: arm-smmu-v3's ``event 0xNN received:`` and the four
  ``0x%016llx`` dwords of the event record printed after it
  (arm_smmu_evtq_thread); for the address faults F_TRANSLATION (0x10),
  F_ADDR_SIZE (0x11), F_ACCESS (0x12) and F_PERMISSION (0x13) the
  StreamID is dword 0 bits [63:32], RnW dword 1 bit 35 and the input
  address dword 2 (SMMUv3 spec 7.3, the event records);
* ``smmu``: arm-smmu's ``Unhandled context fault: fsr=0x..,
  iova=0x.., fsynr=0x.., [cbfrsynra=0x.., ]cb=N``; FSYNR0.WNR (bit 4)
  is a write;
* ``dmar``: Intel VT-d's ``[DMA Read|DMA Write ...] Request device
  [BB:DD.F] ... fault addr [0x]ADDR [fault reason ...]`` (dmar_fault_do_one,
  drivers/iommu/intel/dmar.c; the address lost its ``0x`` before v6.x);
* ``mtk``: mtk_iommu's ``fault type=0x.. iova=0x.. pa=0x.. ...``, with
  ``read``/``write`` at the end from v5.x (mtk_iommu_isr).

A line that starts one of these reports but does not read as the kernel
prints it raises :class:`~.formats.LogFormatError` (the parser may then
find the rest of it on the next line: a line wrapped by a mail client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..pgtable.common import fmt_size
from .formats import LogFormatError, TIME

__all__ = ["FaultLine", "Fault", "scan_fault", "FAULT_FORMATS",
           "smmu_v3_fault", "SMMU_V3_DWORDS"]

#: The formats read, by the name :class:`FaultLine` gives them.
FAULT_FORMATS = {
    "amd-trace": "io_page_fault tracepoint (report_iommu_fault)",
    "amd-vi": "AMD-Vi 'Event logged [IO_PAGE_FAULT ...]'",
    "smmu-v3": "arm-smmu-v3 'event 0x10 received:' and its dwords",
    "smmu": "arm-smmu 'Unhandled context fault: ...'",
    "dmar": "Intel VT-d 'DMAR: [DMA Read ...] ... fault addr ...'",
    "mtk": "MediaTek 'fault type=... iova=...'",
}
#: dwords of an SMMUv3 event record (EVTQ_ENT_DWORDS)
SMMU_V3_DWORDS = 4
#: SMMUv3 event ids that carry an input address, and their names
SMMU_V3_ADDR_EVENTS = {0x10: "F_TRANSLATION", 0x11: "F_ADDR_SIZE",
                       0x12: "F_ACCESS", 0x13: "F_PERMISSION"}

_HEX = r"0x([0-9a-fA-F]{1,16})"
_TRACE = re.compile(r"io_page_fault: IOMMU:(\S*) (\S+) iova=" + _HEX
                    + r" flags=0x([0-9a-fA-F]+)", re.ASCII)
_AMD = re.compile(r"(?:(\S+) (\S+): (?=AMD-Vi: ))?(?:AMD-Vi: )?Event logged "
                  r"\[IO_PAGE_FAULT (?:device=([0-9a-fA-F:.]+) )?"
                  r"domain=0x([0-9a-fA-F]+) address=" + _HEX
                  + r" flags=0x([0-9a-fA-F]+)\]", re.ASCII)
_SMMU_V3 = re.compile(r"(?:(\S+) (\S+): )?event 0x([0-9a-fA-F]{2}) "
                      r"received:\s*$", re.ASCII)
_DWORD = re.compile(r"^\s*(?:\[[ 0-9.]+\] )?(?:\S+ \S+: )?\s*0x"
                    r"([0-9a-fA-F]{16})\s*$", re.ASCII)
_SMMU = re.compile(r"(?:(\S+) (\S+): )?Unhandled context fault: fsr=0x"
                   r"([0-9a-fA-F]+), iova=" + _HEX + r", fsynr=0x"
                   r"([0-9a-fA-F]+), (?:cbfrsynra=0x([0-9a-fA-F]+), )?"
                   r"cb=([0-9]+)", re.ASCII)
_DMAR = re.compile(r"\[(DMA Read|DMA Write)[^\]]*\] Request device "
                   r"\[([0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\] "
                   r"(?:PASID [0-9a-fA-F]+ )?fault addr (?:0x)?"
                   r"([0-9a-fA-F]{1,16}) \[fault reason", re.ASCII)
_MTK = re.compile(r"(?:(\S+) (\S+): )?fault type=0x([0-9a-fA-F]+) iova="
                  + _HEX + r" pa=0x([0-9a-fA-F]+)(?P<rest>.*)$", re.ASCII)
# the words that start each report: a line holding one is a fault line,
# complete or not
_STARTS = (("io_page_fault: IOMMU:", "amd-trace"),
           ("IO_PAGE_FAULT", "amd-vi"),
           ("received:", "smmu-v3"),
           ("Unhandled context fault", "smmu"),
           ("Request device [", "dmar"),
           ("fault type=0x", "mtk"))


@dataclass(frozen=True)
class FaultLine:
    """A fault report read from the log: ``fmt`` (a key of
    :data:`FAULT_FORMATS`), ``line`` (its first line), ``iova`` (the
    faulting input address; ``None`` for an SMMUv3 event head whose
    dwords follow), ``device`` (as the report names it), ``access``
    (``'read'``, ``'write'`` or ``None``), ``detail`` (the report's own
    words: fault reason, fsr, event name) and ``time`` (seconds, or
    ``None``). ``more`` is the number of lines still to read (the
    dwords of an SMMUv3 event)."""

    fmt: str
    line: int
    iova: int | None
    device: str | None = None
    access: str | None = None
    detail: str = ""
    time: float | None = None
    more: int = 0


def _time(line: str, end: int) -> float | None:
    m = TIME.search(line, 0, max(0, end) + 1)
    return float(m.group(1)) if m else None


def scan_fault(line: str, lineno: int = 0) -> FaultLine | None:
    """The fault report that ``line`` holds, ``None`` if it holds none;
    raises :class:`~.formats.LogFormatError` for a line that starts a
    report but does not read as the kernel prints it."""
    fmt = None
    for word, name in _STARTS:
        at = line.find(word)
        if at >= 0:
            fmt = name
            break
    if fmt is None:
        return None
    # the timestamp is the first one before the report's own words
    when = _time(line, at)
    if fmt == "amd-trace":
        m = _TRACE.search(line)
        if m:
            drv, dev, iova, flags = m.groups()
            return FaultLine(fmt, lineno, int(iova, 16),
                             dev if not drv else f"{dev} ({drv})", None,
                             f"flags=0x{flags}", when)
        raise LogFormatError("io_page_fault line does not read as the "
                             "tracepoint prints it, 'io_page_fault: "
                             "IOMMU:<driver> <device> iova=0x<hex> "
                             "flags=0x<hex>'", line, lineno)
    if fmt == "amd-vi":
        m = _AMD.search(line)
        if m:
            drv, name, devid, dom, addr, flags = m.groups()
            flags = int(flags, 16)
            dev = devid or name
            return FaultLine(fmt, lineno, int(addr, 16), dev,
                             "write" if flags & 0x20 else "read",
                             f"domain=0x{dom} flags=0x{flags:04x}",
                             when)
        raise LogFormatError("AMD-Vi IO_PAGE_FAULT line does not read as "
                             "amd_iommu prints it, 'Event logged "
                             "[IO_PAGE_FAULT [device=..] domain=0x.. "
                             "address=0x.. flags=0x..]'", line, lineno)
    if fmt == "smmu-v3":
        m = _SMMU_V3.search(line)
        if not m:
            if "event 0x" not in line:
                return None      # another driver's "received:"
            raise LogFormatError("arm-smmu-v3 event line does not read as "
                                 "'event 0x<id> received:'", line, lineno)
        _drv, dev, evid = m.groups()
        ev = int(evid, 16)
        name = SMMU_V3_ADDR_EVENTS.get(ev, f"event 0x{ev:02x}")
        return FaultLine(fmt, lineno, None, dev, None, name,
                         when, SMMU_V3_DWORDS)
    if fmt == "smmu":
        m = _SMMU.search(line)
        if m:
            _drv, dev, fsr, iova, fsynr, cbfr, cb = m.groups()
            who = f"cb {cb}" + (f" sid 0x{int(cbfr, 16) & 0xffff:x}"
                                if cbfr is not None else "")
            return FaultLine(fmt, lineno, int(iova, 16), who,
                             "write" if int(fsynr, 16) & 0x10 else "read",
                             f"fsr=0x{fsr}", when)
        raise LogFormatError("arm-smmu context fault line does not read as "
                             "'Unhandled context fault: fsr=0x.., "
                             "iova=0x.., fsynr=0x.., [cbfrsynra=0x.., ]"
                             "cb=N'", line, lineno)
    if fmt == "dmar":
        m = _DMAR.search(line)
        if m:
            kind, dev, addr = m.groups()
            code, _, why = line[m.end():].strip().partition("]")
            return FaultLine(fmt, lineno, int(addr, 16), dev,
                             "read" if kind == "DMA Read" else "write",
                             f"fault reason {code.strip()}: "
                             f"{why.strip()}"[:60], when)
        if "fault index" in line or "INTR-REMAP" in line:
            return None          # an interrupt-remapping fault: no iova
        raise LogFormatError("DMAR fault line does not read as "
                             "dmar_fault_do_one prints it, '[DMA Read|DMA "
                             "Write ...] Request device [bb:dd.f] fault "
                             "addr 0x<hex> [fault reason ..]'", line, lineno)
    m = _MTK.search(line)
    if m:
        _drv, dev, typ, iova, _pa, rest = m.groups()
        rest = rest.strip()
        access = rest.rsplit(None, 1)[-1] if rest else None
        if access not in ("read", "write"):
            access = None
        return FaultLine("mtk", lineno, int(iova, 16), dev, access,
                         f"type=0x{typ}", when)
    raise LogFormatError("MediaTek fault line does not read as mtk_iommu "
                         "prints it, 'fault type=0x.. iova=0x.. pa=0x.. "
                         "...'", line, lineno)


def smmu_v3_dword(line: str) -> int | None:
    """The dword an SMMUv3 event dump line holds (``\\t0x%016llx`` behind
    the device's prefix), or ``None``."""
    m = _DWORD.match(line)
    return int(m.group(1), 16) if m else None


def smmu_v3_fault(head: FaultLine, dwords) -> FaultLine:
    """The fault of an SMMUv3 event record: ``head`` (the ``event 0xNN
    received:`` line) completed by its four dwords; the address events
    give the input address (dword 2), the StreamID (dword 0 [63:32]) and
    RnW (dword 1 bit 35). Other events keep ``iova=None``."""
    d0, d1, d2 = dwords[0], dwords[1], dwords[2]
    ev = d0 & 0xFF
    sid = d0 >> 32
    dev = f"sid 0x{sid:x}"
    if head.device:
        dev += f" ({head.device})"
    if ev not in SMMU_V3_ADDR_EVENTS:
        return FaultLine("smmu-v3", head.line, None, dev, None, head.detail,
                         head.time)
    access = "read" if d1 >> 35 & 1 else "write"
    return FaultLine("smmu-v3", head.line, d2, dev, access,
                     SMMU_V3_ADDR_EVENTS[ev], head.time)


@dataclass
class Fault:
    """A fault explained: the report (:class:`FaultLine` fields) and what
    the replay knew of the address when the fault was logged.

    ``verdict`` is one of

    * ``'never mapped'``: nothing in the log had mapped it;
    * ``'mapped'``: the page table mapped it when the fault came, so the
      fault is not a missing mapping: a permission the log does not show,
      or a TLB entry that no longer matches the table (``note`` says what
      the model allows there);
    * ``'use after unmap'``: it had been mapped and was unmapped before
      the fault, at ``unmap_line`` by ``unmap_device``, ``dt`` seconds
      before (when both lines have timestamps).

    ``after_events`` is the number of map/unmap events before it.
    """

    fmt: str
    line: int
    iova: int
    device: str | None
    access: str | None
    detail: str
    time: float | None
    verdict: str
    paddr: int | None = None
    unmap_line: int | None = None
    unmap_device: str | None = None
    unmap_iova: int | None = None
    unmap_size: int | None = None
    dt: float | None = None
    note: str = ""
    #: how many map/unmap events came before the fault in the log
    after_events: int = 0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        for key in ("iova", "paddr", "unmap_iova"):
            if d[key] is not None:
                d[key] = f"{d[key]:#x}"
        return d

    def explain(self) -> str:
        """One or two plain ASCII lines: where, what, and the verdict."""
        who = f" by {self.device}" if self.device else ""
        acc = f" {self.access}" if self.access else ""
        head = (f"line {self.line}: {self.fmt}{acc} fault at "
                f"{self.iova:#x}{who}")
        if self.verdict == "use after unmap":
            by = f" by {self.unmap_device}" if self.unmap_device else ""
            when = f", {format_dt(self.dt)} before" if self.dt is not None \
                else ""
            what = ""
            if self.unmap_iova is not None and self.unmap_size:
                what = (f" ({self.unmap_iova:#x} +{fmt_size(self.unmap_size)})")
            body = (f"use after unmap: unmapped{what} at line "
                    f"{self.unmap_line}{by}{when}")
        elif self.verdict == "mapped":
            body = f"mapped (to {self.paddr:#x}) when it faulted"
            if self.note:
                body += f": {self.note}"
        else:
            body = "never mapped in this log"
        return f"{head}\n  {body}"


def format_dt(dt: float) -> str:
    """A time difference for people: ``3.2 ms``, ``41 us``, ``1.50 s``."""
    a = abs(dt)
    if a >= 1:
        return f"{dt:.2f} s"
    if a >= 1e-3:
        return f"{dt * 1e3:.1f} ms"
    return f"{dt * 1e6:.0f} us"
