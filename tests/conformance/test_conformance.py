"""The kernel's own io-pgtable code against the model: a sample of the
``make conformance`` run (240 sequences), the kernel selftests from the
built sources, and checks that the comparison can fail.

Needs gcc and Debian's linux-source-6.1 and linux-source-6.12; without
them every test here is skipped with the reason.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from conformance import build, gen, run  # noqa: E402
from conformance.model import dump, make_table, run_model  # noqa: E402

KERNELS = ("6.1", "6.12")
_missing = [f"linux-source-{k}" for k in KERNELS if not build.sources_present(k)]
if not (shutil.which("gcc") or shutil.which("cc")):
    _missing.insert(0, "gcc")
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"needs {', '.join(_missing)}: run make conformance "
    "(it installs them) to compare the model with the kernel's code")


@pytest.fixture(scope="module")
def binaries():
    return {k: str(b) for k, b in build.ensure_all(KERNELS).items()}


@pytest.mark.parametrize("kver", KERNELS)
def test_kernel_selftests_pass(binaries, kver):
    """arm_lpae_do_selftests and arm_v7s_do_selftests, built from the
    package's sources with the shim, return 0."""
    assert build.selftests(kver) == (0, 0)


@pytest.mark.parametrize("kver", KERNELS)
@pytest.mark.parametrize("fmt", ("lpae", "v7s"))
def test_sample_has_no_divergence(binaries, kver, fmt):
    st = run.run_chunk((kver, fmt, 7, 60, binaries[kver], run.ERAS[kver]))
    assert st["sequences"] == 60 and st["ops"] > 600
    assert st["divergences"] == 0, "\n".join(
        run.format_divergence(dict(d, kernel=kver, fmt=fmt)) for d in st["shown"])


def test_the_comparison_can_fail(binaries):
    """6.1's __arm_lpae_unmap (entry by entry, pages added without a
    gather) is not the v6.12 era's: compared with it, the run diverges."""
    st = run.run_chunk(("6.1", "lpae", 7, 60, binaries["6.1"], "v6.12"))
    assert st["divergences"] > 0


def test_summary_prints_the_allowlist(binaries, capsys):
    assert run.main(["--sequences", "5", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 divergences" in out
    for name, reason in run.read_allowlist().items():
        assert f"{name} (" in out and reason in out


def test_generator_is_deterministic():
    assert gen.sequences(3, "lpae", 5) == gen.sequences(3, "lpae", 5)
    assert gen.sequences(3, "v7s", 5) != gen.sequences(4, "v7s", 5)


def test_dump_replaces_table_addresses_by_ids():
    pt = make_table({"fmt": "lpae", "granule": 4096, "stage": 1, "ias": 48,
                     "oas": 48, "ns": False}, "v6.12")
    assert run_model(pt, ("M", 0x200000, 0x80000000, 4096, 3, 3))[0] == "ok"
    lines = dump(pt)
    assert lines[:2] == ["T 0 200", "I 0 t1:3"]
    assert lines[-1] == "I 0 80000e43 3 1000"    # a run of 3 pages
