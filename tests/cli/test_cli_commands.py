"""The installed ``iommu-viz`` command: exit status and output of replay,
scenario, --help and errors (one line on stderr; 1 for failures, 2 for
usage and for parts this build lacks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iommu_viz.cli import main, parse_size

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "iommu-viz"
EXAMPLE = ROOT / "examples" / "vm-start.log"

LOG = """# tracer: nop
qemu-kvm-4575 [008] ....... 438.308478: map: IOMMU: iova=0x0000000040000000 - 0x0000000040200000 paddr=0x0000000880000000 size=2097152
qemu-kvm-4575 [008] ....... 438.308479: map: IOMMU: iova=0x0000000040200000 - 0x0000000040203000 paddr=0x0000000123456000 size=12288
qemu-kvm-4575 [008] ....... 438.308480: unmap: IOMMU: iova=0x0000000040005000 - 0x0000000040006000 size=4096 unmapped_size=4096
qemu-kvm-4575 [008] ....... 438.308481: map: IOMMU: iova=0xnothex paddr=0x1 size=4096
"""


def run(*args, stdin=None):
    assert EXE.exists(), f"{EXE} is not installed (pip install -e .)"
    p = subprocess.run([str(EXE), *map(str, args)], input=stdin,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "small.log"
    path.write_text(LOG)
    return path


def _one_error_line(err, start="iommu-viz"):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(start)
    return lines[0]


def test_help_everywhere():
    for args in ([], ["replay"], ["scenario"]):
        code, out, err = run(*args, "--help")
        assert code == 0 and err == ""
        assert out.startswith("usage: iommu-viz")
    code, out, _ = run("--help")
    assert "scenario" in out and "replay" in out
    code, out, _ = run("replay", "--help")
    assert "--granule" in out and "--kernel" in out and "--format" in out
    assert "--fmt" in out and "v7s" in out and "--mtk" in out


def test_replay_text(log):
    code, out, err = run("replay", log, "--granule", "4K", "--kernel", "v5.4",
                         "--format", "text")
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(ln) <= 72 and ln.isascii() for ln in lines)
    assert lines[0] == ("replay: LPAE 4K granule, 48-bit iova, kernel v5.4 "
                        "era")
    assert "log: 5 lines, 3 iommu events, 1 other lines, 1 malformed" in out
    assert "blocks split               1" in out
    assert "malformed lines (first 1):" in out
    assert "line 5: iommu:map iova '0xnothex' is not a 0x hex number" in out
    assert "mappings after all 3 events:" in out
    assert ("0x000040000000-0x000040004fff -> 0x000880000000      5 x 4K page"
            in lines)
    assert ("0x000040200000-0x000040202fff -> 0x000123456000      3 x 4K page"
            in lines)


def test_replay_v6_13_and_at(log):
    code, out, _ = run("replay", log, "--kernel", "v6.13")
    assert code == 0
    assert "refused partial            1" in out
    assert "0x000040000000-0x0000401fffff -> 0x000880000000      1 x 2M block" \
        in out.splitlines()
    code, out, _ = run("replay", log, "--at", "1")
    assert code == 0 and "mappings after the first 1 of 3 events:" in out
    assert "3 x 4K page" not in out


def test_replay_json_and_output_file(log, tmp_path):
    dest = tmp_path / "out.json"
    code, out, err = run("replay", log, "--format", "json", "-o", dest)
    assert code == 0 and out == "" and err == ""
    doc = json.loads(dest.read_text())
    s = doc["summary"]
    assert s["blocks_split"] == 1 and s["malformed"] == 1
    assert s["pages_mapped"] == {"4K": 3, "2M": 1}
    assert doc["mappings"][0] == {"iova": "0x40000000", "paddr": "0x880000000",
                                  "pgsize": "4K", "count": 5, "kind": "page"}
    assert doc["problems"][0]["line"] == 5


def test_replay_from_stdin():
    code, out, err = run("replay", "-", stdin=LOG)
    assert code == 0, err
    assert "3 iommu events" in out


def test_replay_example_log():
    code, out, err = run("replay", EXAMPLE, "--rows", "3")
    assert code == 0, err
    assert "511 iommu events" in out and "not shown" in out
    assert all(len(ln) <= 72 for ln in out.splitlines())


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz dot")
def test_replay_svg_tree(log, tmp_path):
    dest = tmp_path / "tree.svg"
    code, _, err = run("replay", log, "--format", "svg", "-o", dest)
    assert code == 0, err
    svg = dest.read_text()
    assert "<svg" in svg and "after 3 of 3 events" in svg


@pytest.mark.parametrize("args, status, text", [
    (["replay", "/nonexistent/x.log"], 1,
     "iommu-viz: cannot read '/nonexistent/x.log': No such file or directory"),
    (["replay", "/"], 1, "iommu-viz: cannot read '/': it is a directory"),
    (["replay", "LOG", "--granule", "5K"], 2,
     "argument --granule: '5K' is not an LPAE granule"),
    (["replay", "LOG", "--granule", "lots"], 2,
     "argument --granule: 'lots' is not a size"),
    (["replay", "LOG", "--kernel", "v9"], 2, "argument --kernel: invalid choice"),
    (["replay", "LOG", "--ias", "60"], 1, "ias 60 is out of range"),
    (["replay", "LOG", "--fmt", "arm64"], 2,
     "argument --fmt: 'arm64' is not a page-table format; choose lpae or "
     "v7s"),
    (["replay", "LOG", "--fmt", "v7s", "--ias", "48"], 1,
     "ias 48 is out of range; v7s takes a 32-bit iova"),
    (["replay", "LOG", "--at", "99"], 1,
     "--at 99 is beyond the log's 3 events"),
    (["replay", "LOG", "--device", "gpu"], 1,
     "device 'gpu' does not appear in the log"),
    (["replay"], 2, "the following arguments are required: LOG"),
    ([], 2, "iommu-viz: error: choose a command"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    (["scenario"], 2, "give a scenario NAME, or --list"),
    (["scenario", "seed", "--list"], 2, "give either NAME or --list"),
    (["scenario", "seed", "--bbml", "3"], 2, "argument --bbml"),
])
def test_errors_are_one_line(args, status, text, log):
    args = [str(log) if a == "LOG" else a for a in args]
    code, out, err = run(*args)
    assert code == status
    assert out == ""
    assert text in _one_error_line(err)


# ---------------------------------------------------------------- scenarios
def _has_scenarios():
    try:
        from iommu_viz.scenarios import catalog, get  # noqa: F401
        from iommu_viz.render.export import render_run  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_scenarios(), reason="no scenario layer")
def test_scenario_list_and_render():
    from iommu_viz.scenarios import catalog
    code, out, err = run("scenario", "--list")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(list(catalog()))
    assert all(len(ln) <= 72 and ln.isascii() for ln in lines)
    name = lines[0].split()[0]
    code, out, err = run("scenario", name, "--kernel", "v5.4", "--fast",
                         "--format", "text")
    assert code == 0, err
    assert out.strip() and all(len(ln) <= 72 for ln in out.splitlines())
    code, out, err = run("scenario", "no-such-scenario")
    assert code == 1 and "no-such-scenario" in _one_error_line(err)


def test_scenario_without_the_scenario_layer(monkeypatch, capsys):
    """When iommu_viz.scenarios (or its get/catalog) is missing, the
    command says so in one line and exits 2."""
    import iommu_viz
    monkeypatch.setitem(sys.modules, "iommu_viz.scenarios", None)
    monkeypatch.delattr(iommu_viz, "scenarios", raising=False)
    assert main(["scenario", "--list"]) == 2
    assert main(["scenario", "seed"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["iommu-viz: scenarios are not available in this build"] * 2


def test_scenario_options_reach_the_scenario(monkeypatch, capsys):
    """--lazy/--fast/--bbml/--kernel become the scenario layer's options,
    and the run goes to render_run with the format."""
    import types
    calls = {}

    def fake(**kw):
        calls["opts"] = kw
        return "RUN"
    fake_sc = types.ModuleType("iommu_viz.scenarios")
    fake_sc.get = lambda name: fake
    fake_sc.catalog = lambda: [("seed", "The seed.\nMore.")]
    fake_ex = types.ModuleType("iommu_viz.render.export")
    fake_ex.render_run = lambda run, fmt, step=None: f"{run} as {fmt}"
    import iommu_viz
    import iommu_viz.render
    monkeypatch.setitem(sys.modules, "iommu_viz.scenarios", fake_sc)
    monkeypatch.setattr(iommu_viz, "scenarios", fake_sc, raising=False)
    monkeypatch.setitem(sys.modules, "iommu_viz.render.export", fake_ex)
    monkeypatch.setattr(iommu_viz.render, "export", fake_ex, raising=False)
    assert main(["scenario", "seed", "--kernel", "v6.13", "--lazy", "--fast",
                 "--bbml", "2", "--format", "json"]) == 0
    assert calls["opts"] == {"kernel": "v6.13", "strict": False, "fast": True,
                             "bbml": 2}
    assert capsys.readouterr().out == "RUN as json\n"
    assert main(["scenario", "seed"]) == 0
    assert calls["opts"] == {}
    assert main(["scenario", "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "seed  The seed."


def test_parse_size():
    assert [parse_size(s) for s in ("4K", "4k", "4KiB", "64K", "4096",
                                    "0x1000", "2M")] == \
        [4096, 4096, 4096, 65536, 4096, 4096, 2 << 20]
    with pytest.raises(ValueError, match="'4X' is not a size"):
        parse_size("4X")


def test_a_refusal_of_the_model_is_one_line(monkeypatch, capsys):
    """main() catches the package's one error base class (errors.py), not
    Exception: a refusal that reaches it is one line and status 1; any
    other exception is a bug and still raises."""
    import iommu_viz.quiz
    from iommu_viz.errors import ApiError
    from iommu_viz.scenarios import ScenarioError

    def refuse(seed):
        raise ApiError("EEXIST", "iova 0x40000000 is already mapped")
    monkeypatch.setattr(iommu_viz.quiz, "make_problem", refuse)
    assert main(["quiz", "--seed", "1"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line == ("iommu-viz: iova 0x40000000 is already mapped "
                    "(-EEXIST)")

    def bad_file(seed):
        raise ScenarioError("x.scn", 3, "unknown op", "'flip'")
    monkeypatch.setattr(iommu_viz.quiz, "make_problem", bad_file)
    assert main(["quiz", "--seed", "1"]) == 1
    assert _one_error_line(capsys.readouterr().err) == \
        "iommu-viz: x.scn:3: unknown op: 'flip'"

    def bug(seed):
        raise KeyError("bug")
    monkeypatch.setattr(iommu_viz.quiz, "make_problem", bug)
    with pytest.raises(KeyError):
        main(["quiz", "--seed", "1"])
