"""`iommu-viz run FILE`: the outputs of `scenario` for a file, stdin,
--set, --matrix (text within 72 columns, wrapped; json), and errors that
name the file, line and rule with exit status 2 and no output."""

from __future__ import annotations

import io
import json
import time

from pathlib import Path

import pytest

from iommu_viz import scenarios
from iommu_viz.cli import main

#: the issue's example (the seed thread as a scenario file)
SEED = (Path(__file__).resolve().parents[1] / "scenarios"
        / "issue-example.scn").read_text()
MATRIX = ["kernel=v4.20,v5.4,v6.12,v6.13", "bbml=0,2", "strict=yes,no"]


@pytest.fixture
def seed_file(tmp_path):
    f = tmp_path / "seed.scn"
    f.write_text(SEED)
    return f


def run(capsys, *argv):
    code = main(["run", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_json_and_scenario(capsys, seed_file):
    code, out, err = run(capsys, seed_file)
    assert code == 0, err
    assert out.startswith("iommu-viz: lpae 4K, kernel v5.4, strict, BBML0, "
                          "adversarial SMMU")
    assert all(len(ln) <= 72 for ln in out.splitlines())
    code, out, _ = run(capsys, seed_file, "--format", "json")
    assert json.loads(out)["config"]["personality"] == "adversarial"
    code, out, _ = run(capsys, seed_file, "--format", "scenario")
    assert scenarios.parse(out).run().events == \
        scenarios.parse(SEED).run().events
    assert "A2: access 0x40002000" in out
    code, out, _ = run(capsys, seed_file, "--format", "perfetto")
    assert "traceEvents" in json.loads(out)


def test_stdin_set_and_step(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SEED))
    code, out, err = run(capsys, "-", "--set", "kernel=v6.13", "--set",
                         "smmu=typical", "--format", "scenario")
    assert code == 0, err
    assert out.splitlines()[1] == "config kernel=v6.13 strict bbml=0 " \
                                  "smmu=typical"
    monkeypatch.setattr("sys.stdin", io.StringIO(SEED))
    code, out, _ = run(capsys, "-", "--step", "0")
    assert "Step 0 of" in out


def test_a_shipped_name_runs_and_takes_params(capsys):
    code, out, err = run(capsys, "seed", "--set", "fast=yes",
                         "--format", "scenario")
    assert code == 0, err
    assert "unmap_fast 0x40001000 4K g1" in out


def test_matrix_text_fits_72_columns_and_wraps(capsys, seed_file):
    code, out, err = run(capsys, seed_file, "--matrix", *MATRIX)
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(ln) <= 72 for ln in lines)
    assert "T translated, F fault, S stale, C conflict" in out
    tables = out.split("\n\n")[1:]
    assert len(tables) == 2            # 16 columns do not fit in one
    cols = 0
    for t in tables:
        rows = t.splitlines()
        assert [r.split()[0] for r in rows] == \
            ["kernel", "bbml", "strict", "------", "A1", "A2", "A3"]
        cols += len(rows[0].split()) - 1
    assert cols == 16
    first = tables[0].splitlines()
    # v4.20's split syncs itself: A1 faults; v5.4 BBML0 may conflict at A2
    assert first[4].split()[1:3] == ["F", "F"]
    assert first[5].split()[5] == "C/T"


def test_matrix_json(capsys, seed_file):
    code, out, err = run(capsys, "--matrix", *MATRIX, "--format", "json",
                         seed_file)
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ["A1", "A2", "A3"]
    assert len(doc["A1"]) == 16
    assert doc["A1"]["kernel=v4.20 bbml=0 strict=yes"] == ["fault"]
    assert doc["A1"]["kernel=v5.4 bbml=0 strict=yes"] == ["fault", "stale"]
    assert doc["A2"]["kernel=v5.4 bbml=0 strict=yes"] == \
        ["conflict", "translated"]
    assert doc["A2"]["kernel=v5.4 bbml=2 strict=yes"] == ["translated"]
    for cells in doc.values():
        for v in cells.values():
            assert v == sorted(v)


def test_matrix_of_the_seed_file_takes_under_a_second(seed_file):
    sc = scenarios.load(seed_file)
    t0 = time.perf_counter()
    m = scenarios.matrix(sc, MATRIX)
    assert time.perf_counter() - t0 < 1.0
    assert len(m.configurations) == 16


@pytest.mark.parametrize("text, message", [
    ("map 0x0 0x0 4K\nunmpa 0x0 4K\n", "case.scn:2: unknown op: 'unmpa'"),
    ("map 0x0 0x0 4X\n", "case.scn:1: bad size:"),
    ("map 0x800 0x0 4K\n", "case.scn:1: refused by the model: map: "
                           "unaligned"),
    ("sync g\n", "case.scn:1: undefined gather: g"),
    ("config colour=red\n", "case.scn:1: unknown option: 'colour'"),
])
def test_errors_exit_2_naming_file_line_and_rule(capsys, tmp_path, text,
                                                  message):
    f = tmp_path / "case.scn"
    f.write_text("access 0x0\n" * 0 + text)
    out_file = tmp_path / "out.svg"
    code = main(["run", str(f), "--format", "svg", "-o", str(out_file)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == "" and not out_file.exists()     # nothing half-run
    assert err.count("\n") == 1
    assert err.startswith(f"iommu-viz: {tmp_path / message}")


@pytest.mark.parametrize("argv, status, message", [
    (["run"], 2, "give a scenario FILE"),
    (["run", "no/such.scn"], 1, "cannot read 'no/such.scn'"),
    (["run", "seed", "--matrix", "kernel=v5.4", "--format", "svg"], 2,
     "--matrix writes text or json"),
    (["run", "seed", "--matrix", "colour=red"], 2, "unknown option"),
    (["run", "seed", "--matrix", "bbml=0,7"], 2, "bbml 7 must be 0, 1 or 2"),
    (["run", "seed", "--matrix", "bbml"], 2, "bad matrix axis"),
    (["run", "seed", "--set", "kernel=v9"], 2, "kernel 'v9' is not"),
    (["run", "seed", "--set", "bbml"], 2, "--set: bad setting"),
    (["run", "seed", "--set", "fast=perhaps"], 2, "'perhaps' is not yes"),
])
def test_usage_errors(capsys, argv, status, message):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == status
    assert message in err and out == ""
