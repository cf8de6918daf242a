"""The set-up contract: pyproject.toml, environment.yml and binder/ agree,
.ci/run runs only `make test`, and scripts/setup.sh fails with a clear
one-line message when Python is too old or `dot` is missing.

The setup.sh checks use its documented test hooks (IOMMU_VIZ_PYTHON,
IOMMU_VIZ_FAKE_NONROOT) and source the script to call single functions;
nothing here installs anything.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup.sh"
BASH = "/bin/bash"

# conda-forge name -> PyPI name, for the packages that differ.
CONDA_TO_PYPI = {"python-graphviz": "graphviz"}
# conda entries that are not Python runtime dependencies of the package.
CONDA_NON_RUNTIME = {"python", "pip", "graphviz"}  # conda `graphviz` is the dot program


# --------------------------------------------------------------------------
# A minimal YAML reader for conda environment files: top-level `key: value`
# and `key:` followed by `- item` lists, where an item may be `pip:` with its
# own nested list. Comments and blank lines are ignored. That is all
# environment.yml uses; anything else raises.


def parse_env_yaml(text: str) -> dict:
    doc: dict = {}
    key = None  # current top-level key holding a list
    nested = None  # current nested list (e.g. under `- pip:`)
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if indent == 0:
            k, sep, v = body.partition(":")
            if not sep:
                raise ValueError(f"unsupported line: {raw!r}")
            v = v.strip()
            if v:
                doc[k.strip()] = v
                key = None
            else:
                doc[k.strip()] = []
                key = k.strip()
            nested = None
            continue
        if key is None or not body.startswith("- "):
            raise ValueError(f"unsupported line: {raw!r}")
        item = body[2:].strip()
        if nested is not None and indent > nested[0]:
            nested[1].append(item)
            continue
        if item.endswith(":"):
            sub: list = []
            doc[key].append({item[:-1]: sub})
            nested = (indent, sub)
        else:
            doc[key].append(item)
            nested = None
    return doc


def split_requirement(req: str) -> tuple[str, frozenset[str]]:
    """'ipywidgets>=8,<9' -> ('ipywidgets', {'>=8', '<9'})"""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", req)
    assert m, req
    name = m.group(1).lower().replace("_", "-")
    spec = frozenset(s.replace(" ", "") for s in m.group(2).split(",") if s.strip())
    return name, spec


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_runtime() -> dict[str, frozenset[str]]:
    return dict(split_requirement(r) for r in pyproject()["project"]["dependencies"])


def env_file(path: Path) -> dict:
    return parse_env_yaml(path.read_text())


def conda_runtime(env: dict) -> dict[str, frozenset[str]]:
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            continue
        name, spec = split_requirement(dep)
        if name in CONDA_NON_RUNTIME:
            continue
        out[CONDA_TO_PYPI.get(name, name)] = spec
    return out


def conda_names(env: dict) -> dict[str, frozenset[str]]:
    return dict(split_requirement(d) for d in env["dependencies"] if isinstance(d, str))


def pip_section(env: dict) -> list[str]:
    for dep in env["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            return dep["pip"]
    return []


ENV_FILES = [ROOT / "environment.yml", ROOT / "binder" / "environment.yml"]


# --------------------------------------------------------------------------
# Dependencies agree across pyproject.toml, environment.yml, binder/


def test_minimal_yaml_reader_agrees_with_pyyaml_when_available():
    yaml = pytest.importorskip("yaml")
    for path in ENV_FILES:
        assert parse_env_yaml(path.read_text()) == yaml.safe_load(path.read_text()), path


def test_pyproject_runtime_dependencies_are_the_expected_five():
    # voila serves the Explorer demo (make demo, the README's Binder link)
    assert set(pyproject_runtime()) == {"jupyterlab", "ipywidgets", "matplotlib", "graphviz",
                                        "voila"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_conda_env_matches_pyproject(path):
    env = env_file(path)
    assert env["name"] == "iommu-viz"
    assert env["channels"] == ["conda-forge"]
    assert conda_runtime(env) == pyproject_runtime()
    names = conda_names(env)
    # Same lower bound on Python as requires-python.
    assert names["python"] == frozenset({pyproject()["project"]["requires-python"]})
    # conda-forge `graphviz` is the `dot` program; `pip` so pip works in the env.
    assert "graphviz" in names and "pip" in names


def test_root_env_installs_the_package_with_pip():
    assert pip_section(env_file(ROOT / "environment.yml")) in (["-e ."], ["."])


def test_binder_installs_the_package_in_postbuild():
    # repo2docker builds environment.yml before the repository is copied in,
    # so a `pip: - -e .` line there cannot work; postBuild does it instead.
    assert pip_section(env_file(ROOT / "binder" / "environment.yml")) == []
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR
    text = post.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert "set -e" in text
    assert re.search(r"^python -m pip install .*-e \.$", text, re.M)


def test_readme_binder_link_opens_lab_in_notebooks():
    readme = (ROOT / "README.md").read_text()
    assert "https://mybinder.org/v2/gh/OWNER/iommu-viz/HEAD?urlpath=lab/tree/notebooks" in readme


# --------------------------------------------------------------------------
# .ci/run and the Makefile


def test_ci_run_runs_make_test_then_conformance():
    ci = ROOT / ".ci" / "run"
    assert ci.stat().st_mode & stat.S_IXUSR
    lines = [ln.strip() for ln in ci.read_text().splitlines()]
    assert lines[0].startswith("#!") and "bash" in lines[0]
    commands = [ln for ln in lines[1:] if ln and not ln.startswith("#")]
    assert commands == [
        "set -euo pipefail",
        'cd "$(dirname "${BASH_SOURCE[0]}")/.."',
        "make test",
        "make conformance",
    ]


def test_no_playwright_browser_download():
    for path in (ROOT / "Makefile", SETUP, ROOT / ".ci" / "run"):
        code = "\n".join(
            ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")
        )
        assert "playwright install" not in code, path


def test_makefile_targets_use_setup_script():
    mk = (ROOT / "Makefile").read_text()
    for target in ("lab: setup", "test: setup-browser", "bench: setup", "clean:"):
        assert re.search(rf"^{re.escape(target)}", mk, re.M), target
    assert "scripts/setup.sh base" in mk and "scripts/setup.sh browser" in mk
    assert "$(PY) -m pytest $(PYTEST_ARGS)" in mk
    assert "--ServerApp.root_dir=notebooks" in mk


# --------------------------------------------------------------------------
# scripts/setup.sh


def fake_python(path: Path, version: str | None) -> Path:
    """An executable that answers the version probe like Python `version`
    ("3 9"), or fails like a pyenv shim for an unselected version (None)."""
    if version is None:
        body = "#!/bin/sh\necho 'pyenv: not selected' >&2\nexit 127\n"
    else:
        major, minor = version.split(".")
        body = f"#!/bin/sh\necho {major} {minor}\n"
    path.write_text(body)
    path.chmod(0o755)
    return path


def run_bash(script: str, env: dict, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BASH, "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def call_setup_function(call: str, path: str, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/"), **extra}
    return run_bash(f'source "{SETUP}"; {call}', env)


def test_setup_sources_without_running(tmp_path):
    r = call_setup_function("echo sourced", str(tmp_path))
    assert r.returncode == 0 and r.stdout == "sourced\n" and r.stderr == ""


def test_too_old_python_gives_one_clear_line(tmp_path):
    fake_python(tmp_path / "python3", "3.9")
    r = call_setup_function("find_python", str(tmp_path))
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == (
        "setup: Python 3.11 or newer is needed (python3 is 3.9): install it, "
        "e.g. on Debian 12 or later: sudo apt-get install python3 python3-venv\n"
    )


def test_no_python_at_all(tmp_path):
    r = call_setup_function("find_python", str(tmp_path))
    assert r.returncode == 1
    assert "no python3 found on PATH" in r.stderr and r.stderr.count("\n") == 1


def test_search_order_skips_broken_and_old_pythons(tmp_path):
    fake_python(tmp_path / "python3.13", None)  # a pyenv shim that does not run
    fake_python(tmp_path / "python3.12", "3.10")  # lying name, too old
    fake_python(tmp_path / "python3.11", "3.11")
    fake_python(tmp_path / "python3", "3.12")
    r = call_setup_function("find_python", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'python3.11'}\n"


def test_python_override_hook_end_to_end(tmp_path):
    # The whole script stops at the Python check, before touching anything.
    old = fake_python(tmp_path / "python-old", "3.9")
    env = dict(os.environ, IOMMU_VIZ_PYTHON=str(old))
    r = subprocess.run(
        [BASH, str(SETUP), "base"], env=env, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 1
    assert r.stderr.startswith("setup: Python 3.11 or newer is needed (")
    assert r.stderr.count("\n") == 1


def test_missing_dot_as_non_root(tmp_path):
    r = call_setup_function("need_command dot graphviz", str(tmp_path), IOMMU_VIZ_FAKE_NONROOT="1")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == "setup: `dot` is missing: run `sudo apt-get install graphviz`\n"


def test_missing_dot_as_non_root_end_to_end(tmp_path):
    # PATH holds only `dirname`; Python comes from the hook: no `dot`, no apt-get.
    (tmp_path / "dirname").symlink_to("/usr/bin/dirname")
    env = {
        "PATH": str(tmp_path),
        "IOMMU_VIZ_PYTHON": sys.executable,
        "IOMMU_VIZ_FAKE_NONROOT": "1",
    }
    r = subprocess.run(
        [BASH, str(SETUP), "base"], env=env, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr == "setup: `dot` is missing: run `sudo apt-get install graphviz`\n"


def test_install_runs_only_when_pyproject_is_newer_than_stamp(tmp_path):
    # A fake project with a fake .venv whose python logs what it is asked to do.
    log = tmp_path / "log"
    venv_py = tmp_path / ".venv" / "bin" / "python"
    venv_py.parent.mkdir(parents=True)
    venv_py.write_text(
        "#!/bin/sh\n"
        f'case "$1" in -c) echo 3 11 ;; *) echo "$@" >> "{log}" ;; esac\n'
    )
    venv_py.chmod(0o755)
    pyproj = tmp_path / "pyproject.toml"
    pyproj.write_text("")
    stamp = tmp_path / ".venv" / ".stamp-install"
    env = {"PATH": os.environ["PATH"]}
    call = f'source "{SETUP}"; cd "{tmp_path}"; ensure_venv "{venv_py}"'

    # No stamp: install, then stamp.
    r = run_bash(call, env)
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "-m pip install --quiet -e .[test]\n"
    assert stamp.exists()

    # Stamp newer than pyproject.toml: nothing to do.
    log.unlink()
    os.utime(pyproj, (1_000_000_000, 1_000_000_000))
    r = run_bash(call, env)
    assert r.returncode == 0, r.stderr
    assert not log.exists() and r.stdout == ""

    # pyproject.toml edited after the stamp: install again.
    os.utime(stamp, (1_000_000_000, 1_000_000_000))
    os.utime(pyproj, None)
    r = run_bash(call, env)
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "-m pip install --quiet -e .[test]\n"
