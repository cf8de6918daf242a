"""The seeded exercises: the same seed gives the same problem everywhere,
the printed scenario is exactly what was run (the text goes through the
scenario parser), and every answer is the model's (checked against an
independent re-run of the recorded calls)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from iommu_viz import Simulation
from iommu_viz.cli import main
from iommu_viz.pgtable.common import KERNELS, SZ_2M
from iommu_viz.quiz import (
    LETTERS, OUTCOMES, check_seed, make_problem, run_scenario, scenario_text,
)
from iommu_viz.scenarios import ScenarioError, parse

GOLDEN = Path(__file__).parent / "golden"
SEEDS = range(0, 60)


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
            "personality": set(), "how": set(), "pa bit 16": set()}
    for seed in range(120):
        p = make_problem(seed)
        for k in ("kernel", "strict", "bbml", "personality"):
            seen[k].add(p.config[k])
        # pages whose output address has bit 16 set (an address bit in a
        # page descriptor, nT only in a block's) are drawn like any other
        block = p.ops[0]
        for op in p.ops:
            if op["op"] == "access" and op.get("label") and \
                    block["iova"] <= op["iova"] < block["iova"] + SZ_2M:
                pa = block["paddr"] + op["iova"] - block["iova"]
                seen["pa bit 16"].add(bool(pa & 1 << 16))
        kinds = [o["op"] for o in p.ops]
        seen["how"].add("unmap" if "gather" not in kinds else
                        "fast+sync" if "sync" in kinds else "fast")
    assert seen["kernel"] == set(KERNELS)
    assert seen["strict"] == {True, False}
    assert seen["bbml"] == {0, 1, 2}
    assert seen["personality"] == {"typical", "adversarial", "coherent"}
    assert seen["how"] == {"unmap", "fast+sync", "fast"}
    assert seen["pa bit 16"] == {True, False}


# ---------------------------------------------------------------- answers
def _printed_scenario(text):
    """The scenario as the problem's text prints it: the lines from
    ``config`` up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("config "))
    end = lines.index("", start)
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("block", range(4))
def test_printed_text_parses_and_runs_to_the_answers(block):
    """For many seeds the scenario the problem prints, cut from its text
    and read by the scenario parser as a file would be, runs to exactly
    the quiz's answers: every label's allowed set and pick, and the TLB
    left at the end."""
    for seed in range(block * 30, block * 30 + 30):
        p = make_problem(seed)
        text = _printed_scenario(p.text())
        assert text == p.scenario()
        sc = parse(text, source=f"seed-{seed}.scn")
        assert sc.config == p.config and sc.labels == list(p.labels)
        sim = sc.run()
        ans = p.answers()
        got = {op["label"]: a for op, a in zip(
            (o for o in sim.ops if o["op"] == "access"), sim.accesses)
            if "label" in op}
        assert list(got) == [a.label for a in ans.accesses], seed
        for a in ans.accesses:
            assert (a.allowed, a.picked) == (
                tuple(o for o in OUTCOMES if o in got[a.label].allowed),
                got[a.label].outcome), (seed, a.label)
        final = tuple(sorted((e.iova, e.size, e.level, e.paddr)
                             for e in sim.state.tlb))
        assert final == tuple(sorted(ans.tlb.remaining)), seed


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


def test_run_scenario_is_the_parser():
    """run_scenario is parse + Scenario.run: other options reach the
    config line, and a text the model refuses names the line."""
    text = scenario_text(dict(kernel="v6.12", strict=False, bbml=1,
                              personality="coherent", ttl_hints=False),
                         [dict(op="map", iova=0x40000000, paddr=0x80000000,
                               size=SZ_2M),
                          dict(op="access", iova=0x40001000, label="A1")])
    assert text.splitlines()[0] == ("config kernel=v6.12 lazy bbml=1 "
                                    "smmu=coherent ttl_hints=no")
    sim, labelled = run_scenario(text)
    assert sim.ttl_hints is False and sim.personality == "coherent"
    assert list(labelled) == ["A1"] and labelled["A1"] is sim.accesses[0]
    with pytest.raises(ScenarioError, match=r"^q:4: refused by the model: map: .*EEXIST"):
        run_scenario(text + "\nmap 0x40000000 0x80000000 2M", source="q")


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
