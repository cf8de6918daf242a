"""What the browser tests share: the system Chromium (never a downloaded
browser), the module-level skip when it is missing, and the start and stop
of local servers (JupyterLab, Voila) on a free loopback port."""

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def need_chromium():
    """Skip the calling test module unless Debian's Chromium and
    Playwright's Python API are there; returns ``playwright.sync_api``."""
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium: `make test` installs "
                    "Debian's chromium package for this test",
                    allow_module_level=True)
    return pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(proc, log):
    """End a server started in its own session, and everything it
    started (kernels), then close its log."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()
