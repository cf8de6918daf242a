"""``iommu-viz replay``: faults in the text and JSON, no silent success on
logs without events, -o never overwrites the log, the same line numbers
from a file and from standard input, ASCII output, and a Perfetto trace
that obeys the trace-event format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iommu_viz.cli import main

EXE = Path(sys.executable).parent / "iommu-viz"
FT = "  kworker/2:1-88   [002] .....  {:.6f}: "

LOG = "\n".join([
    "# tracer: nop",
    FT.format(1.0) + "map: IOMMU: dev=gpu iova=0x0000000040000000 - "
    "0x0000000040200000 paddr=0x0000000880000000 size=2097152",
    FT.format(1.5) + "unmap: IOMMU: dev=gpu iova=0x0000000040005000 - "
    "0x0000000040006000 size=4096 unmapped_size=4096",
    FT.format(1.6) + "map: IOMMU: dev=nic iova=0x0000000000100000 - "
    "0x0000000000101000 paddr=0x0000000123456000 size=4096",
    FT.format(1.7) + "unmap: IOMMU: dev=nic iova=0x0000000000100000 - "
    "0x0000000000101000 size=4096 unmapped_size=4096",
    "[    1.703000] xhci_hcd 0000:00:14.0: AMD-Vi: Event logged "
    "[IO_PAGE_FAULT domain=0x000d address=0x100040 flags=0x0020]",
    "[    1.800000] arm-smmu 5000000.iommu: Unhandled context fault: "
    "fsr=0x402, iova=0x40010000, fsynr=0x10, cbfrsynra=0x801, cb=3",
]) + "\n"


def run_bytes(*args, stdin=b""):
    p = subprocess.run([str(EXE), *map(str, args)], input=stdin,
                       capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "faults.log"
    path.write_text(LOG)
    return path


def test_faults_in_text_and_json(log, capsys):
    assert main(["replay", str(log), "--kernel", "v6.12"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(ln) <= 72 and ln.isascii() for ln in lines)
    assert ("faults:           2 in 2 lines, 1 mapped, 1 use after unmap"
            in lines)
    assert "  line 6: amd-vi write fault at 0x100040 by 0000:00:14.0" in lines
    words = " ".join(out.split())       # the section is folded at 72
    assert ("use after unmap: unmapped (0x100000 +4 KiB) at line 5 by "
            "nic, 3.0 ms before") in words
    assert ("mapped (to 0x880010000) when it faulted: not a missing "
            "mapping; the 2 MiB block at 0x40000000 was split at line 3")\
        in words
    assert main(["replay", str(log), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    f = doc["summary"]["faults"]
    assert [x["verdict"] for x in f] == ["use after unmap", "mapped"]
    assert f[0]["unmap_line"] == 5 and f[0]["unmap_device"] == "nic"
    assert f[1]["paddr"] == "0x880010000"


@pytest.mark.parametrize("content, lines", [
    (b"", 0), (b"hello\nworld\n", 2), (b"x" * 100, 1)])
def test_no_events_is_an_error(tmp_path, capsys, content, lines):
    path = tmp_path / "empty.log"
    path.write_bytes(content)
    assert main(["replay", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"iommu-viz: no IOMMU map/unmap events found "
                             f"in '{path}' ({lines} lines read); read: "
                             "ftrace iommu:map/iommu:unmap")


def test_a_log_of_faults_only_says_so(tmp_path, capsys):
    path = tmp_path / "f.log"
    path.write_text(LOG.splitlines()[5] + "\n")
    assert main(["replay", str(path)]) == 1
    err = capsys.readouterr().err
    assert "(1 lines read); it has 1 fault report(s)" in err


def test_a_binary_file_gets_its_own_error(tmp_path, capsys):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 20)
    assert main(["replay", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"iommu-viz: '{path}' is a binary file (it holds NUL "
                   "bytes), not a text log; give the text of a trace or of "
                   "dmesg")


def test_output_naming_the_log_is_refused(log, tmp_path, monkeypatch,
                                           capsys):
    before = log.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in (str(log), log.name, "./" + log.name):
        assert main(["replay", log.name, "-o", out]) == 1
        err = capsys.readouterr().err
        assert "is the log being read; write the output to another file" \
            in err
    link = tmp_path / "link.log"
    link.symlink_to(log)
    assert main(["replay", str(link), "-o", str(log)]) == 1
    assert log.read_bytes() == before


def test_stdin_and_path_number_lines_alike(tmp_path):
    text = LOG.replace("\n", "\r\r\n").encode()
    path = tmp_path / "serial.log"
    path.write_bytes(text)
    code, a, err = run_bytes("replay", path, "--format", "json")
    assert code == 0, err
    code, b, err = run_bytes("replay", "-", "--format", "json", stdin=text)
    assert code == 0, err
    da, db = json.loads(a), json.loads(b)
    assert da["summary"]["lines"] == db["summary"]["lines"] == 7
    assert [f["line"] for f in da["summary"]["faults"]] == \
        [f["line"] for f in db["summary"]["faults"]] == [6, 7]


def test_non_ascii_text_is_escaped(tmp_path, capsys):
    path = tmp_path / "u.log"
    path.write_text(LOG + "map: IOMMU: iova=0x\u0664 paddr=0x1 size=4096\n",
                    encoding="utf-8")
    assert main(["replay", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.isascii() and "\\u0664" in out


# ---------------------------------------------------------------- perfetto
def check_trace_events(doc):
    """The trace-event format's rules that Perfetto and chrome://tracing
    rely on: a traceEvents list; every event has name, ph, ts, pid, tid;
    complete events have a duration >= 0; instants have a scope; and the
    complete events of one thread never overlap (unless nested)."""
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
    slices = {}
    for e in doc["traceEvents"]:
        for key in ("name", "ph", "pid", "tid", "ts"):
            assert key in e, (key, e)
        assert e["ph"] in ("M", "X", "i", "C", "B", "E")
        assert isinstance(e["ts"], (int, float))
        if e["ph"] == "X":
            assert e["dur"] >= 0
            slices.setdefault((e["pid"], e["tid"]), []).append(
                (e["ts"], e["ts"] + e["dur"]))
        if e["ph"] == "i":
            assert e["s"] in ("g", "p", "t")
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name",
                                 "thread_sort_index")
    for track, spans in slices.items():
        spans.sort()
        for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
            assert a1 <= b0 + 1e-9 or b1 <= a1, (track, (a0, a1), (b0, b1))
    return slices


def test_perfetto_trace_of_a_replay(log, tmp_path):
    dest = tmp_path / "t.json"
    assert main(["replay", str(log), "--format", "perfetto", "-o",
                 str(dest)]) == 0
    doc = json.loads(dest.read_text())
    slices = check_trace_events(doc)
    ev = doc["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in ev
             if e["name"] == "thread_name"}
    assert {"gpu", "nic", "faults", "use after unmap"} <= set(names.values())
    # real time: the log's timestamps in microseconds
    maps = [e for e in ev if e["ph"] == "X" and e["name"].startswith("map")]
    assert [m["ts"] for m in maps] == [1_000_000.0, 1_600_000.0]
    faults = [e for e in ev if e["ph"] == "i"]
    assert [(f["ts"], f["args"]["verdict"]) for f in faults] == [
        (1_703_000.0, "use after unmap"), (1_800_000.0, "mapped")]
    window = [e for e in ev if e["name"].startswith("unmapped 0x100040")]
    assert window[0]["ts"] == 1_700_000.0 and window[0]["dur"] == 3000.0
    assert sum(map(len, slices.values())) == 5


def test_perfetto_slices_never_overlap_on_busy_tracks(tmp_path):
    lines = []
    for k in range(50):
        a = 0x100000 + (k % 4) * 0x1000
        t = 2.0 + (k // 3) * 1e-7          # several events per microsecond
        lines.append(FT.format(t) + f"map: IOMMU: dev=d{k % 2} "
                     f"iova=0x{a:x} paddr=0x{a:x} size=4096")
        lines.append(FT.format(t) + f"unmap: IOMMU: dev=d{k % 2} "
                     f"iova=0x{a:x} size=4096 unmapped_size=4096")
    for k in range(6):
        lines.append(f"[ {2.00001 + k * 1e-6:.6f}] AMD-Vi: Event logged "
                     f"[IO_PAGE_FAULT device=00:14.0 domain=0x1 address="
                     f"0x{0x100000 + (k % 4) * 0x1000:x} flags=0x0]")
    path = tmp_path / "busy.log"
    path.write_text("\n".join(lines) + "\n")
    dest = tmp_path / "t.json"
    assert main(["replay", str(path), "--format", "perfetto", "-o",
                 str(dest)]) == 0
    check_trace_events(json.loads(dest.read_text()))


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz dot")
def test_svg_tree_marks_the_faults(log, tmp_path):
    dest = tmp_path / "tree.svg"
    assert main(["replay", str(log), "--format", "svg", "-o",
                 str(dest)]) == 0
    svg = dest.read_text()
    assert "fault at 0x100040" in svg and "use after unmap" in svg
    assert "fault at 0x40010000" in svg


def test_text_tree_lists_the_faults(log, capsys):
    assert main(["replay", str(log), "--tree"]) == 0
    out = capsys.readouterr().out
    assert "Faults (the entry each faulting address walks to):" in out
    assert "line 6: fault at 0x100040: use after unmap" in out
    assert out.isascii()


def test_errors_are_ascii_too(tmp_path, capsys):
    path = tmp_path / "caf\u00e9.log"
    path.write_text(LOG.replace("dev=gpu", "dev=g\u00e9pu"))
    assert main(["replay", str(path), "--device", "x"]) == 1
    err = capsys.readouterr().err
    assert err.isascii() and "'g\\xe9pu'" in err
    path.write_text("nothing\n")
    assert main(["replay", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.isascii() and "caf\\xe9.log" in err


def test_at_keeps_the_faults_before_it(log, capsys):
    # after 4 events the unmap of 0x100000 (event 4) is done: the fault
    # that follows it is listed with the table, the later one is not
    assert main(["replay", str(log), "--at", "4", "--tree"]) == 0
    out = capsys.readouterr().out
    assert "mappings after the first 4 of 4 events:" in out
    assert "line 6: fault at 0x100040: use after unmap" in out
    assert main(["replay", str(log), "--at", "1", "--tree"]) == 0
    out = capsys.readouterr().out
    assert "Faults (the entry" not in out
    assert "0x000040000000-0x0000401fffff -> 0x000880000000      1 x 2M block" \
        in out
