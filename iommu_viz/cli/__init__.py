"""The ``iommu-viz`` command: render named scenarios and replay real logs.

    iommu-viz scenario NAME [--kernel v5.4] [--lazy] [--fast] [--bbml N]
                            [--format text|svg|png|perfetto|json|scenario|html]
                            [--show-file] [-o FILE]
    iommu-viz scenario --list
    iommu-viz run FILE [--set KEY=VALUE ...] [--format ...] [-o FILE]
    iommu-viz run FILE --matrix KEY=V1,V2 ... [--format text|json]
    iommu-viz quiz [--seed N] [-c]
    iommu-viz cheatsheet [--markdown]
    iommu-viz replay LOG [--fmt lpae|v7s] [--mtk] [--granule 4K]
                         [--kernel v5.4] [--ias BITS] [--device NAME]
                         [--format text|json|svg|png|perfetto] [--tree]
                         [--at N] [--rows N] [-o FILE]

One module per command: ``scenario``, ``run``, ``replay``, ``quiz`` in
the modules of those names.

Errors are one line on standard error: exit status 1 for a failure (a file
that cannot be read, an unknown scenario), 2 for a usage error or a part
that this build does not have.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import IommuVizError
from . import quiz as _quiz

__all__ = ["main", "parse_size"]

PROG = "iommu-viz"


class CliError(Exception):
    """A failure to report as one line, with an exit status."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} "
                     f"(see '{self.prog} --help')\n")


def parse_size(text: str) -> int:
    """``'4K'``, ``'4k'``, ``'4KiB'``, ``'4096'`` or ``'0x1000'`` -> 4096."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 10, "M": 20, "G": 30}
    try:
        if t[-1:] in units:
            return int(t[:-1], 10) << units[t[-1]]
        return int(t, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (write 4K, 64K or 4096)") \
            from None


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="See what an Arm IOMMU does to its page tables and TLB: "
                    "render named scenarios, replay logs from a real system.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND",
                           parser_class=_Parser)

    from . import run, scenario
    scenario.add_parser(sub)
    run.add_parser(sub)

    from . import replay as replay_cmd      # imports this package's helpers
    replay_cmd.register(sub)
    _quiz.add_parsers(sub)
    return p


# ---------------------------------------------------------------- output
def _emit(data, output, fmt):
    """Write str or bytes ``data`` to ``output`` (a path) or stdout."""
    if output:
        mode = "wb" if isinstance(data, bytes) else "w"
        try:
            with open(output, mode) as f:
                f.write(data)
                if isinstance(data, str) and not data.endswith("\n"):
                    f.write("\n")
        except OSError as e:
            raise CliError(f"cannot write {output!r}: {e.strerror or e}") \
                from None
        return
    if isinstance(data, bytes):
        if sys.stdout.isatty():
            raise CliError(f"{fmt} output is binary; give -o FILE")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    sys.stdout.write(data if data.endswith("\n") else data + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- replay
# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    """Run ``iommu-viz`` with ``argv`` (default ``sys.argv[1:]``); returns
    the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:          # --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:
        sys.stderr.write(f"{PROG}: error: choose a command, scenario, run, "
                         f"replay, quiz or cheatsheet (see '{PROG} "
                         "--help')\n")
        return 2
    try:
        return args.func(args)
    except CliError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return e.status
    except IommuVizError as e:       # a refusal of the model (errors.py)
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    except BrokenPipeError:
        # the reader went away (e.g. piped into head): stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
