"""Fault reports: every driver's format in the wordings kernels have
printed (samples written for these tests in the kernel's printed format),
and what the replay says about each fault: never mapped, mapped, or used
after an unmap at a given line, by a given device, some time before."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from iommu_viz.ingest import parse, replay
from iommu_viz.ingest.faults import format_dt, scan_fault
from iommu_viz.ingest.formats import LogFormatError

FT = "  kworker/2:1-88   [002] .....  {:.6f}: "
DM = "[{:12.6f}] "


def ft_map(t, iova, pa, size, dev="gpu"):
    return (FT.format(t) + f"map: IOMMU: dev={dev} iova=0x{iova:016x} - "
            f"0x{iova + size:016x} paddr=0x{pa:016x} size={size}")


def ft_unmap(t, iova, size, dev="gpu", got=None):
    got = size if got is None else got
    return (FT.format(t) + f"unmap: IOMMU: dev={dev} iova=0x{iova:016x} - "
            f"0x{iova + size:016x} size={size} unmapped_size={got}")


# ---------------------------------------------------------------- formats
# (line, fmt, iova, device, access, seconds)
SAMPLES = [
    # io_page_fault tracepoint (report_iommu_fault), v4.x .. v6.x
    ("  irq/25-AMD-Vi-123   [000] ..... 11.400000: io_page_fault: "
     "IOMMU:xhci_hcd 0000:00:14.0 iova=0x00000000fffd0000 flags=0x0000",
     "amd-trace", 0xfffd0000, "0000:00:14.0 (xhci_hcd)", None, 11.4),
    # AMD-Vi, v4.x: the prefix in the string, 16 hex digits, bus:dev.fn
    (DM.format(5.5) + "AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
     "domain=0x000d address=0x00000000fffd1040 flags=0x0020]",
     "amd-vi", 0xfffd1040, "00:14.0", "write", 5.5),
    # AMD-Vi, v5.x: pci_err behind the device's name
    (DM.format(5.6) + "xhci_hcd 0000:00:14.0: AMD-Vi: Event logged "
     "[IO_PAGE_FAULT domain=0x000d address=0xfffd2000 flags=0x0000]",
     "amd-vi", 0xfffd2000, "0000:00:14.0", "read", 5.6),
    # AMD-Vi, v6.x: segment in device=
    (DM.format(5.7) + "AMD-Vi: Event logged [IO_PAGE_FAULT "
     "device=0000:03:00.0 domain=0x0002 address=0x1000 flags=0x0020]",
     "amd-vi", 0x1000, "0000:03:00.0", "write", 5.7),
    # arm-smmu, v4.x (no cbfrsynra) and v5.x+ (with it)
    (DM.format(7.0) + "arm-smmu 5000000.iommu: Unhandled context fault: "
     "fsr=0x402, iova=0x40010000, fsynr=0x10, cb=3",
     "smmu", 0x40010000, "cb 3", "write", 7.0),
    (DM.format(7.1) + "arm-smmu 5000000.iommu: Unhandled context fault: "
     "fsr=0x402, iova=0x40010000, fsynr=0x0, cbfrsynra=0x801, cb=3",
     "smmu", 0x40010000, "cb 3 sid 0x801", "read", 7.1),
    # Intel VT-d: v4.x (no 0x), v5.x (w/o PASID, reason with h), v6.x
    (DM.format(8.0) + "DMAR: [DMA Read] Request device [00:02.0] fault "
     "addr 7f000 [fault reason 06] PTE Read access is not set",
     "dmar", 0x7f000, "00:02.0", "read", 8.0),
    (DM.format(8.1) + "DMAR: [DMA Write w/o PASID] Request device [00:02.0]"
     " fault addr 7f000 [fault reason 05h] PTE Write access is not set",
     "dmar", 0x7f000, "00:02.0", "write", 8.1),
    (DM.format(8.2) + "DMAR: [DMA Read NO_PASID] Request device [00:1f.6] "
     "fault addr 0xfee00000 [fault reason 0x06] PTE Read access is not set",
     "dmar", 0xfee00000, "00:1f.6", "read", 8.2),
    # MediaTek: v4.x, v5.x (layer, direction), v6.x (master=)
    (DM.format(9.0) + "mtk-iommu 10205000.iommu: fault type=0x5 "
     "iova=0x40020000 pa=0x0 larb=1 port=2", "mtk", 0x40020000,
     "10205000.iommu", None, 9.0),
    (DM.format(9.1) + "mtk-iommu 10205000.iommu: fault type=0x5 "
     "iova=0x40020000 pa=0x0 larb=1 port=2 layer=0 read", "mtk",
     0x40020000, "10205000.iommu", "read", 9.1),
    (DM.format(9.2) + "mtk-iommu 10205000.iommu: fault type=0x5 "
     "iova=0x40021000 pa=0x0 master=0x41(larb=1 port=2) layer=1 write",
     "mtk", 0x40021000, "10205000.iommu", "write", 9.2),
]


@pytest.mark.parametrize("line, fmt, iova, dev, access, t", SAMPLES)
def test_fault_formats(line, fmt, iova, dev, access, t):
    f = scan_fault(line, 7)
    assert (f.fmt, f.iova, f.device, f.access, f.line) == \
        (fmt, iova, dev, access, 7)
    assert f.time == pytest.approx(t)
    # behind a mail quote too
    g = scan_fault("> " + line, 7)
    assert (g.fmt, g.iova, g.device) == (fmt, iova, dev)


SMMU_V3 = [
    DM.format(3.0) + "arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:",
    DM.format(3.0) + "arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000800000010",
    DM.format(3.0) + "arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000800000000",
    DM.format(3.0) + "arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000040005040",
    DM.format(3.0) + "arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000000000000",
]


def test_smmu_v3_event_dump_spans_five_lines():
    log = parse.parse_log(SMMU_V3 + ["other"])
    (f,) = log.faults
    assert (f.fmt, f.iova, f.device, f.access, f.detail, f.line) == (
        "smmu-v3", 0x40005040, "sid 0x8 (arm-smmu-v3.0.auto)", "read",
        "F_TRANSLATION", 1)
    assert log.fault_lines == 5 and log.skipped == 1 and log.lines == 6
    # a write (RnW clear), an F_PERMISSION event
    lines = list(SMMU_V3)
    lines[0] = lines[0].replace("0x10", "0x13")
    lines[1] = lines[1].replace("0000000800000010", "0000000800000013")
    lines[2] = lines[2].replace("0000000800000000", "0000000000000000")
    (f,) = parse.parse_log(lines).faults
    assert (f.access, f.detail) == ("write", "F_PERMISSION")


def test_smmu_v3_event_cut_short_is_malformed():
    log = parse.parse_log(SMMU_V3[:3] + ["unrelated line"])
    assert log.faults == [] and log.malformed == 1
    assert "2 of its 4 dwords" in log.problems[0].reason
    assert log.problems[0].lineno == 1 and log.skipped == 1


@pytest.mark.parametrize("line, words", [
    ("AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 domain=0x000d "
     "address=0xzz flags=0x0]", "AMD-Vi IO_PAGE_FAULT"),
    ("arm-smmu 5000000.iommu: Unhandled context fault: fsr=0x402",
     "arm-smmu context fault"),
    ("DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr",
     "DMAR fault"),
    ("mtk-iommu 1.iommu: fault type=0x5 iova=0x", "MediaTek fault"),
    ("x [1] 1.0: io_page_fault: IOMMU:drv dev iova=0x1", "io_page_fault"),
])
def test_malformed_fault_lines(line, words):
    with pytest.raises(LogFormatError, match=words):
        scan_fault(line, 3)
    log = parse.parse_log([line])
    assert log.malformed == 1 and words in log.problems[0].reason


def test_dmar_detail_is_the_fault_reason():
    f = scan_fault(SAMPLES[8][0])
    assert f.detail == "fault reason 0x06: PTE Read access is not set"


def test_interrupt_remapping_faults_are_not_address_faults():
    line = ("DMAR: [INTR-REMAP] Request device [00:02.0] fault index 0x12 "
            "[fault reason 0x25] Blocked a compatibility format interrupt")
    assert scan_fault(line) is None


# ---------------------------------------------------------------- verdicts
def test_use_after_unmap_names_line_device_and_dt():
    lines = [ft_map(1.0, 0xfffd0000, 0x123450000, 0x2000),
             ft_unmap(1.002, 0xfffd0000, 0x2000),
             DM.format(1.0052) + "xhci_hcd 0000:00:14.0: AMD-Vi: Event "
             "logged [IO_PAGE_FAULT domain=0x000d address=0xfffd1040 "
             "flags=0x0020]"]
    r = replay(lines, kernel="v6.12")
    (f,) = r.faults
    assert f.verdict == "use after unmap"
    assert (f.unmap_line, f.unmap_device, f.unmap_iova, f.unmap_size) == \
        (2, "gpu", 0xfffd0000, 0x2000)
    assert f.dt == pytest.approx(0.0032)
    text = f.explain()
    assert "unmapped (0xfffd0000 +8 KiB) at line 2 by gpu, 3.2 ms before" \
        in text
    assert r.summary.fault_counts() == {"use after unmap": 1}
    d = r.summary.to_dict()["faults"][0]
    assert d["iova"] == "0xfffd1040" and d["unmap_line"] == 2


def test_the_latest_unmap_is_named_and_no_dt_without_timestamps():
    lines = ["map: IOMMU: iova=0x10000 paddr=0x20000 size=8192",
             "unmap: IOMMU: iova=0x10000 size=8192 unmapped_size=8192",
             "map: IOMMU: iova=0x11000 paddr=0x50000 size=4096",
             "unmap: IOMMU: iova=0x11000 size=4096 unmapped_size=4096",
             "AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
             "domain=0x1 address=0x11800 flags=0x0]",
             "AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
             "domain=0x1 address=0x10000 flags=0x0]"]
    f1, f2 = replay(lines).faults
    assert (f1.unmap_line, f1.dt, f1.unmap_device) == (4, None, None)
    assert f2.unmap_line == 2
    assert "at line 4\n" in f1.explain() + "\n"


def test_mapped_and_never_mapped():
    lines = [ft_map(1.0, 0x40000000, 0x880000000, 0x200000),
             "AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
             "domain=0x1 address=0x40001000 flags=0x20]",
             "AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
             "domain=0x1 address=0x90000000 flags=0x20]"]
    mapped, never = replay(lines).faults
    assert mapped.verdict == "mapped" and mapped.paddr == 0x880001000
    assert mapped.note.startswith("not a missing mapping")
    assert never.verdict == "never mapped"
    assert "never mapped in this log" in never.explain()


@pytest.mark.parametrize("kernel, words", [
    ("v4.20", "invalidates and syncs the unmapped page itself"),
    ("v5.4", "leaves the old block's invalidation to the caller's gather"),
    ("v6.12", "a TLB conflict, F_TLB_CONFLICT 0x20"),
])
def test_a_fault_in_a_split_block_says_what_the_era_allows(kernel, words):
    lines = [ft_map(1.0, 0x40000000, 0x880000000, 0x200000),
             ft_unmap(1.1, 0x40005000, 0x1000),
             DM.format(1.2) + "arm-smmu 5000000.iommu: Unhandled context "
             "fault: fsr=0x402, iova=0x40010000, fsynr=0x10, "
             "cbfrsynra=0x801, cb=3"]
    (f,) = replay(lines, kernel=kernel).faults
    assert f.verdict == "mapped"
    assert "2 MiB block at 0x40000000 was split at line 2" in f.note
    assert words in f.note
    # range invalidation with TTL hints came with v5.7 (6a481a95d4c1)
    assert ("TTL hint" in f.note) == (kernel == "v6.12")


def test_v6_13_refuses_the_split_so_the_block_still_maps():
    lines = [ft_map(1.0, 0x40000000, 0x880000000, 0x200000),
             ft_unmap(1.1, 0x40005000, 0x1000, got=0),
             "AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
             "domain=0x1 address=0x40005000 flags=0x20]"]
    (f,) = replay(lines, kernel="v6.13").faults
    assert f.verdict == "mapped" and "split" not in f.note


def _reference_verdicts(ops):
    """Page-by-page: for each fault, mapped / the last unmap's index /
    never, from the 4K ops before it."""
    pages, last_unmap, out = {}, {}, []
    for k, op in enumerate(ops):
        if op[0] == "map":
            if op[1] not in pages:
                pages[op[1]] = True
        elif op[0] == "unmap":
            if pages.pop(op[1], None):
                last_unmap[op[1]] = k
        else:
            if op[1] in pages:
                out.append(("mapped", None))
            elif op[1] in last_unmap:
                out.append(("use after unmap", last_unmap[op[1]] + 1))
            else:
                out.append(("never mapped", None))
    return out


OPS = st.lists(st.tuples(st.sampled_from(["map", "unmap", "fault"]),
                         st.integers(0, 5).map(lambda p: 0x70000 + p * 4096)),
               max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_each_fault_sees_the_state_at_its_line(monkeypatch, ops):
    """Wherever the blocks and segments are cut, a fault is explained
    against exactly the events before it."""
    monkeypatch.setattr(parse, "_BATCH", 3)
    monkeypatch.setattr(parse, "_BLOCK", 97)
    lines = []
    for op, a in ops:
        if op == "map":
            lines.append(f"map: IOMMU: iova=0x{a:x} paddr=0x{a:x} size=4096")
        elif op == "unmap":
            lines.append(f"unmap: IOMMU: iova=0x{a:x} size=4096 "
                         "unmapped_size=4096")
        else:
            lines.append("AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0"
                         f" domain=0x1 address=0x{a:x} flags=0x0]")
    want = _reference_verdicts(ops)
    text = "\n".join(lines) + "\n"
    for source in (lines, text):
        got = [(f.verdict, f.unmap_line) for f in replay(source).faults]
        assert got == want


def test_format_dt():
    assert [format_dt(x) for x in (2.5, 0.0032, 41e-6)] == \
        ["2.50 s", "3.2 ms", "41 us"]
