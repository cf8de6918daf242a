"""docs/scenario-format.md shows what the code does: its scenario blocks
run, its commands print exactly what is shown, its Python examples pass
as doctests, and it names every option and every error rule."""

from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

import pytest

from iommu_viz.cli import main
from iommu_viz.scenarios import parse, sim_options

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenario-format.md"
SRC = Path(__file__).resolve().parents[2] / "iommu_viz" / "scenarios"
TEXT = DOC.read_text()
BLOCKS = re.findall(r"^```(\w+)([^\n]*)\n(.*?)^```", TEXT, re.M | re.S)


def test_scenario_blocks_run():
    unnamed = [b for kind, name, b in BLOCKS
               if kind == "scenario" and not name.strip()]
    assert len(unnamed) >= 2
    for body in unnamed:
        assert parse(body).run().events


def test_console_blocks_print_what_is_shown(tmp_path, monkeypatch, capsys):
    for kind, name, body in BLOCKS:
        if kind == "scenario" and name.strip():
            (tmp_path / name.strip()).write_text(body)
    monkeypatch.chdir(tmp_path)
    shown = [b for kind, _, b in BLOCKS if kind == "console"]
    assert len(shown) >= 2
    for body in shown:
        command, _, expected = body.partition("\n")
        argv = shlex.split(command.removeprefix("$ "))
        assert argv[0] == "iommu-viz"
        main(argv[1:])
        out, err = capsys.readouterr()
        assert out + err == expected, command


def test_python_examples():
    result = doctest.testfile(str(DOC), module_relative=False,
                              optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0


def test_every_option_and_rule_is_documented():
    for name in sim_options():
        assert f"`{name}`" in TEXT, name
    code = "".join(p.read_text() for p in SRC.glob("*.py"))
    rules = set(re.findall(r'err\("([a-z ]+)"', code))
    rules |= set(re.findall(r'ScenarioError\(\s*[\w.]+, [\w.]+, "([a-z ]+)"',
                            code))
    rules |= set(re.findall(r'"([a-z]+ [a-z ]+)"(?=[,}])',
                            code.split("_RULE = ")[1].split("}")[0]))
    rules = {r for r in rules if "{" not in r}
    assert len(rules) > 15
    for head in ("config", "param"):
        rules |= {f"bad {head} line", f"late {head} line"}
    missing = [r for r in sorted(rules) if f"`{r}`" not in TEXT]
    assert not missing, missing


@pytest.mark.parametrize("rule", ["refused by the model", "not refused",
                                  "undefined gather"])
def test_run_time_rules_are_documented(rule):
    assert f"`{rule}`" in TEXT
