"""The seeded exercises: the same seed gives the same problem everywhere,
the printed scenario is exactly what was run, and every answer is the
model's (checked against an independent re-run of the recorded calls)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from iommu_viz import Simulation
from iommu_viz.cli import main
from iommu_viz.pgtable.common import KERNELS
from iommu_viz.quiz import (
    LETTERS, OUTCOMES, check_seed, make_problem, run_ops, scenario_text,
)

GOLDEN = Path(__file__).parent / "golden"
SEEDS = range(0, 60)


def _parse(text):
    """A small reader of the scenario syntax the quiz prints (the inverse
    of scenario_text), so a test can compare printed and run ops."""
    lines = text.splitlines()
    m = re.fullmatch(r"config kernel=(\S+) (strict|lazy) bbml=(\d) "
                     r"smmu=(\w+)", lines[0])
    assert m, lines[0]
    config = dict(kernel=m[1], strict=m[2] == "strict", bbml=int(m[3]),
                  personality=m[4])
    units = {"K": 10, "M": 20, "G": 30}

    def size(t):
        return int(t[:-1]) << units[t[-1]]

    ops = []
    for line in lines[1:]:
        label = None
        if re.match(r"^A\d+: ", line):
            label, line = line.split(": ", 1)
        w = line.split()
        if w[0] == "map":
            ops.append(dict(op="map", iova=int(w[1], 16),
                            paddr=int(w[2], 16), size=size(w[3])))
        elif w[0] == "unmap":
            ops.append(dict(op="unmap", iova=int(w[1], 16), size=size(w[2])))
        elif w[0] == "gather":
            ops.append(dict(op="gather", name=w[1]))
        elif w[0] == "unmap_fast":
            ops.append(dict(op="unmap_fast", iova=int(w[1], 16),
                            size=size(w[2]), gather=w[3]))
        elif w[0] == "sync":
            ops.append(dict(op="sync", gather=w[1]))
        elif w[0] == "speculate":
            ops.append(dict(op="speculate", iova=int(w[1], 16)))
        elif w[0] == "advance":
            ops.append(dict(op="advance", ms=int(w[1])))
        elif w[0] == "access":
            op = dict(op="access", iova=int(w[1], 16))
            if label:
                op["label"] = label
            ops.append(op)
        else:
            raise AssertionError(f"unknown line {line!r}")
    return config, ops


# ---------------------------------------------------------------- determinism
def test_same_seed_same_problem():
    for seed in (0, 1, 12345, 2 ** 63 - 1):
        assert make_problem(seed).text(True) == make_problem(seed).text(True)
    texts = {make_problem(s).scenario() for s in range(20)}
    assert len(texts) == 20           # seeds do pick different problems


def test_same_text_under_another_hash_seed():
    """No set or hash ordering leaks into the text: another interpreter
    with a different PYTHONHASHSEED prints the same answers."""
    code = ("from iommu_viz.quiz import make_problem; "
            "print(make_problem(82).text(True))")
    outs = []
    for hs in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hs)
        p = subprocess.run([sys.executable, "-c", code], env=env,
                           capture_output=True, text=True, check=True)
        outs.append(p.stdout)
    assert outs[0] == outs[1] == make_problem(82).text(True) + "\n"


@pytest.mark.parametrize("seed", [1, 13, 82])
def test_golden(seed):
    """The -c text of three seeds, word for word. If the model changes
    on purpose, regenerate: iommu-viz quiz --seed N -c >
    tests/quiz/golden/seed-N.txt, and read the diff."""
    want = (GOLDEN / f"seed-{seed}.txt").read_text()
    assert make_problem(seed).text(answers=True) + "\n" == want


def test_layout_ascii_72_columns():
    for seed in SEEDS:
        text = make_problem(seed).text(answers=True)
        assert text.isascii(), seed
        assert max(len(line) for line in text.splitlines()) <= 72, seed


def test_generator_covers_the_space():
    """Across seeds, every era, both modes, every BBML level and
    personality and every caller appear."""
    seen = {"kernel": set(), "strict": set(), "bbml": set(),
            "personality": set(), "how": set()}
    for seed in range(120):
        p = make_problem(seed)
        for k in ("kernel", "strict", "bbml", "personality"):
            seen[k].add(p.config[k])
        kinds = [o["op"] for o in p.ops]
        seen["how"].add("unmap" if "gather" not in kinds else
                        "fast+sync" if "sync" in kinds else "fast")
    assert seen["kernel"] == set(KERNELS)
    assert seen["strict"] == {True, False}
    assert seen["bbml"] == {0, 1, 2}
    assert seen["personality"] == {"typical", "adversarial", "coherent"}
    assert seen["how"] == {"unmap", "fast+sync", "fast"}


# ---------------------------------------------------------------- answers
def test_printed_scenario_is_what_runs():
    for seed in SEEDS:
        p = make_problem(seed)
        config, ops = _parse(p.scenario())
        assert config == p.config
        assert ops == list(p.ops)


@pytest.mark.parametrize("seed", list(range(0, 40)))
def test_answers_agree_with_the_model(seed):
    """Each answer is what an independent Simulation, replaying the
    recorded calls, allows; the TLB answer is its final TLB."""
    p = make_problem(seed)
    ans = p.answers()
    sim, labelled = p.run()
    again = Simulation.from_ops(sim.config, sim.ops)
    by_step = {a.step: a for a in again.accesses}
    assert [a.label for a in ans.accesses] == list(p.labels)
    for a in ans.accesses:
        model = by_step[labelled[a.label].step]
        assert set(a.allowed) == set(model.allowed)
        assert a.picked == model.outcome and a.picked in a.allowed
        assert list(a.allowed) == [o for o in OUTCOMES if o in a.allowed]
        assert a.letters == "".join(LETTERS[o] for o in a.allowed)
    final = {(e.iova, e.size, e.level, e.paddr) for e in again.state.tlb}
    assert set(ans.tlb.remaining) == final
    cand = {k for k, _ in ans.tlb.candidates}
    assert final <= cand


def test_reasoning_comes_from_the_run():
    """The reasons name each allowed outcome, the rule behind a conflict
    (BBML), a pending gather or flush queue when a stale entry waits for
    one, and the command that removed an entry."""
    seen = set()
    for seed in SEEDS:
        p = make_problem(seed)
        for a in p.answers().accesses:
            text = " ".join(a.reasons)
            assert text.endswith(f"picked: {a.picked}.")
            assert "Allowed: " + ", ".join(a.allowed) in text
            if "conflict" in a.allowed:
                assert f"BBML{p.config['bbml']}" in text
                assert "F_TLB_CONFLICT" in text
                seen.add("conflict")
            if "stale" in a.allowed:
                assert re.search(r"waits in gather|waits in the flush queue"
                                 r"|no CMD_SYNC has completed|TTL hint"
                                 r"|No invalidation", text), text
                seen.add("stale")
            if "fault" in a.allowed:
                assert "no valid descriptor" in text
        for words in p.answers().tlb.reasons:
            if "removed at step" in words:
                assert "queued by arm_smmu_" in words
                seen.add("removed")
    assert seen == {"conflict", "stale", "removed"}


def test_c_prints_answers_and_reasoning(capsys):
    assert main(["quiz", "--seed", "13"]) == 0
    problem = capsys.readouterr().out
    assert "Answers: iommu-viz quiz --seed 13 -c" in problem
    assert "Allowed:" not in problem
    assert main(["quiz", "--seed", "13", "-c"]) == 0
    out = capsys.readouterr().out
    assert out == make_problem(13).text(answers=True) + "\n"
    for label in make_problem(13).labels:
        assert re.search(rf"^{label}: access 0x[0-9a-f]+: ", out, re.M)
    assert out.count("  - Allowed:") == len(make_problem(13).labels)
    assert re.search(r"^TLB: ", out, re.M)


def test_scenario_text_refuses_unknown_ops():
    with pytest.raises(ValueError, match="unknown op 'flip'"):
        scenario_text(dict(kernel="v5.4"), [dict(op="flip")])
    with pytest.raises(ValueError, match="unknown op 'flip'"):
        run_ops(dict(kernel="v5.4"), [dict(op="flip")])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", ["abc", "", "1.5", "-1", -1, 2 ** 63, 1.5,
                                 True, None])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match="seed .* whole number"):
        check_seed(bad)
    with pytest.raises(ValueError):
        make_problem(bad)


def test_cli_bad_seed_is_one_line(capsys):
    assert main(["quiz", "--seed", "abc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'abc'" in err[0] and "whole number" in err[0]
    assert main(["quiz", "--seed", "18446744073709551616"]) == 2
    assert main(["quiz", "--bogus"]) == 2


def test_installed_command_exit_codes():
    exe = Path(sys.executable).parent / "iommu-viz"
    ok = subprocess.run([str(exe), "quiz", "--seed", "82"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stderr == ""
    assert ok.stdout == make_problem(82).text() + "\n"
    bad = subprocess.run([str(exe), "quiz", "--seed", "abc"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("iommu-viz quiz: error:")
    assert "Traceback" not in bad.stderr
    hlp = subprocess.run([str(exe), "quiz", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert hlp.returncode == 0 and "--seed" in hlp.stdout
