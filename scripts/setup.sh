#!/usr/bin/env bash
# Set up what `make lab`, `make test` and `make bench` need, and nothing more.
#
#   scripts/setup.sh base      Python >= 3.11, .venv with `-e .[test]`, Debian graphviz (dot)
#   scripts/setup.sh browser   base + Debian chromium (the browser test drives it)
#
# Idempotent: a second run installs nothing and takes well under a few seconds.
#   - .venv is created only if .venv/bin/python is missing or does not run;
#   - `pip install -e .[test]` runs only when pyproject.toml is newer than the
#     stamp .venv/.stamp-install (the stamp is touched after a successful install,
#     and goes away with .venv);
#   - apt-get runs only when `dot` / chromium is missing.
# It never downloads a Playwright browser: the tests use Debian's chromium.
#
# Environment (test hooks, used by tests/test_packaging.py):
#   IOMMU_VIZ_PYTHON=/path/python  use this interpreter instead of searching
#                                  python3.13, python3.12, python3.11, python3 on PATH
#   IOMMU_VIZ_FAKE_NONROOT=1       behave as if not root (print the sudo hint, exit 1)
#
# The functions can be sourced (`source scripts/setup.sh`) without running main.
set -euo pipefail

MIN_MAJOR=3
MIN_MINOR=11

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

is_root() {
    [[ -z "${IOMMU_VIZ_FAKE_NONROOT:-}" ]] && [[ "$(id -u)" -eq 0 ]]
}

# Print "MAJOR MINOR" for interpreter $1, or nothing if it does not run.
python_version() {
    "$1" -c 'import sys; print(sys.version_info[0], sys.version_info[1])' 2>/dev/null || true
}

# Print the path of the first Python >= 3.11, or exit 1 with a one-line message.
find_python() {
    local candidates=() c path ver major minor found=""
    if [[ -n "${IOMMU_VIZ_PYTHON:-}" ]]; then
        candidates=("$IOMMU_VIZ_PYTHON")
    else
        candidates=(python3.13 python3.12 python3.11 python3)
    fi
    for c in "${candidates[@]}"; do
        path="$(command -v "$c" 2>/dev/null || true)"
        [[ -n "$path" ]] || continue
        ver="$(python_version "$path")"
        [[ -n "$ver" ]] || continue   # e.g. a pyenv shim for a version not selected
        read -r major minor <<<"$ver"
        if (( major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR) )); then
            printf '%s\n' "$path"
            return 0
        fi
        [[ -n "$found" ]] || found="$c is $major.$minor"
    done
    die "Python ${MIN_MAJOR}.${MIN_MINOR} or newer is needed (${found:-no python3 found on PATH}): install it, e.g. on Debian 12 or later: sudo apt-get install python3 python3-venv"
}

APT_UPDATED=""
# apt_install PKG... : install Debian packages as root, or tell a non-root user how.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$APT_UPDATED" ]]; then
        say "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"
}

# need_command CMD PKG : make sure CMD exists, installing Debian package PKG if not.
need_command() {
    local cmd="$1" pkg="$2"
    if command -v "$cmd" >/dev/null 2>&1; then
        return 0
    fi
    if ! is_root; then
        die "\`$cmd\` is missing: run \`sudo apt-get install $pkg\`"
    fi
    apt_install "$pkg"
    command -v "$cmd" >/dev/null 2>&1 || die "\`$cmd\` is still missing after installing $pkg"
}

need_chromium() {
    if [[ -x /usr/bin/chromium ]] || command -v chromium >/dev/null 2>&1; then
        return 0
    fi
    if ! is_root; then
        die "\`chromium\` is missing: run \`sudo apt-get install chromium\`"
    fi
    apt_install chromium
}

# ensure_venv PYTHON : create .venv (if missing) and install the package (if stale).
ensure_venv() {
    local py="$1"
    if [[ -z "$(python_version .venv/bin/python)" ]]; then
        # Debian's python3 has no ensurepip without the python3-venv package.
        if ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            if ! is_root; then
                die "Python's venv module is missing: run \`sudo apt-get install python3-venv\`"
            fi
            apt_install python3-venv
        fi
        say "creating .venv with $py"
        rm -rf .venv
        "$py" -m venv .venv
    fi
    if [[ ! -e .venv/.stamp-install || pyproject.toml -nt .venv/.stamp-install ]]; then
        say "installing -e .[test] into .venv"
        .venv/bin/python -m pip install --quiet -e '.[test]'
        touch .venv/.stamp-install
    fi
}

main() {
    local mode="${1:-base}"
    case "$mode" in
        base|browser) ;;
        *) die "usage: scripts/setup.sh base|browser" ;;
    esac
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    local py
    py="$(find_python)"
    need_command dot graphviz
    if [[ "$mode" == browser ]]; then
        need_chromium
    fi
    ensure_venv "$py"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
