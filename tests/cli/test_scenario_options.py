"""The scenario command's model switches and --step, through main()
(in-process, fast) and once through the installed command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from iommu_viz.cli import main

EXE = Path(sys.executable).parent / "iommu-viz"


def text_of(capsys, *argv):
    assert main(["scenario", *argv]) == 0
    return capsys.readouterr().out


def test_no_sync_leaves_the_stale_block(capsys):
    synced = text_of(capsys, "seed", "--fast")
    unsynced = text_of(capsys, "seed", "--fast", "--no-sync")
    # without the caller's sync the old 2M block is still in the TLB at
    # the end, and the tree marks it
    assert "TLB still holds 2M block" in unsynced
    assert "TLB still holds 2M block" not in synced


def test_split_sync_on_is_the_v4_20_hack(capsys):
    out = text_of(capsys, "seed", "--fast", "--no-sync", "--split-sync", "on")
    assert "TLB still holds 2M block" not in out
    assert "arm_smmu_tlb_inv_leaf" in text_of(
        capsys, "seed", "--fast", "--no-sync", "--split-sync", "on",
        "--format", "json")


def test_ttl_hints_matter_only_when_honoured(capsys):
    strict_ttl = text_of(capsys, "ttl-split")
    no_ttl = text_of(capsys, "ttl-split", "--no-ttl-hints")
    assert "TLB still holds 2M block" in strict_ttl
    assert "TLB still holds 2M block" not in no_ttl


def test_step_selects_the_state(capsys):
    first = text_of(capsys, "seed", "--step", "0")
    last = text_of(capsys, "seed", "--step", "-1")
    assert "Step 0 of" in first and "Step 0 of" not in last
    assert all(len(line) <= 72 for line in first.splitlines())


@pytest.mark.parametrize("argv, message", [
    (["seed", "--no-sync"], "--no-sync goes with --fast"),
    (["seed", "--step", "999"], "--step 999 is outside"),
    (["seed", "--personality", "bogus"], "invalid choice"),
])
def test_bad_switches_are_one_line_errors(argv, message):
    p = subprocess.run([str(EXE), "scenario", *argv], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode in (1, 2)
    assert message in p.stderr
    assert "Traceback" not in p.stderr
