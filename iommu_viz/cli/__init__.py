"""The ``iommu-viz`` command: render named scenarios and replay real logs.

    iommu-viz scenario NAME [--kernel v5.4] [--lazy] [--fast] [--bbml N]
                            [--format text|svg|png|perfetto|json] [-o FILE]
    iommu-viz scenario --list
    iommu-viz replay LOG [--fmt lpae|v7s] [--mtk] [--granule 4K]
                         [--kernel v5.4] [--ias BITS] [--device NAME]
                         [--format text|json|svg|png|perfetto] [--tree]
                         [--at N] [--rows N] [-o FILE]

One module per command: ``replay`` in :mod:`.replay`.

Errors are one line on standard error: exit status 1 for a failure (a file
that cannot be read, an unknown scenario), 2 for a usage error or a part
that this build does not have.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..sim.smmu import PERSONALITIES
from ..pgtable.common import KERNELS

__all__ = ["main", "parse_size"]

PROG = "iommu-viz"
SCENARIO_FORMATS = ("text", "svg", "png", "perfetto", "json")
NO_SCENARIOS = "scenarios are not available in this build"
NO_RENDER = "renderers are not available in this build"


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

    sc = sub.add_parser(
        "scenario", help="render a named scenario",
        description="Render a named scenario (the 2019 thread's cases and "
                    "more) as text, a picture or a trace.")
    sc.add_argument("name", nargs="?", metavar="NAME",
                    help="scenario name (see --list)")
    sc.add_argument("--list", action="store_true",
                    help="list the scenarios with one-line descriptions")
    sc.add_argument("--kernel", choices=tuple(KERNELS), default=None,
                    help="kernel era whose behaviour to model "
                         "(default: the scenario's own)")
    sc.add_argument("--lazy", action="store_true", default=None,
                    help="lazy (non-strict) invalidation: iommu.strict=0")
    sc.add_argument("--fast", action="store_true", default=None,
                    help="unmap with iommu_unmap_fast(), then "
                         "iommu_iotlb_sync() unless --no-sync")
    sc.add_argument("--no-sync", action="store_true",
                    help="with --fast: the caller never syncs")
    sc.add_argument("--split-sync", choices=("on", "off"), default=None,
                    help="force the split's own invalidate+sync on (the "
                         "v4.20 behaviour) or off")
    sc.add_argument("--personality", choices=tuple(PERSONALITIES),
                    default=None, help="hardware personality (default "
                                       "typical)")
    sc.add_argument("--no-ttl-hints", action="store_true",
                    help="the SMMU ignores TTL hints (or has no range "
                         "invalidation)")
    sc.add_argument("--speculate", action="store_true",
                    help="the SMMU speculatively caches a neighbouring page")
    sc.add_argument("--step", type=int, default=None, metavar="N",
                    help="show the state after step N (default: the last; "
                         "negative counts from the end)")
    sc.add_argument("--bbml", type=int, choices=(0, 1, 2), default=None,
                    metavar="N", help="SMMU break-before-make level 0, 1 or 2")
    sc.add_argument("--format", choices=SCENARIO_FORMATS, default="text",
                    help="output format (default text)")
    sc.add_argument("-o", "--output", metavar="FILE",
                    help="write to FILE instead of standard output")
    sc.set_defaults(func=_cmd_scenario, parser=sc)

    from . import replay as replay_cmd      # imports this package's helpers
    replay_cmd.register(sub)
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


# ---------------------------------------------------------------- scenario
def _scenario_api():
    try:
        from .. import scenarios
        get, catalog = scenarios.get, scenarios.catalog
    except (ImportError, AttributeError):
        raise CliError(NO_SCENARIOS, 2) from None
    return get, catalog


def _catalog_rows(catalog):
    """(name, first line of the description) for each scenario;
    ``catalog()`` gives ``(name, description)`` pairs or a mapping."""
    cat = catalog()
    items = cat.items() if hasattr(cat, "items") else cat
    rows = []
    for name, desc in items:
        desc = str(desc or "").strip()
        rows.append((str(name), desc.splitlines()[0] if desc else ""))
    return rows


def _cmd_scenario(args) -> int:
    if args.list:
        if args.name:
            args.parser.error("give either NAME or --list, not both")
        _get, catalog = _scenario_api()
        rows = _catalog_rows(catalog)
        width = max([len(n) for n, _ in rows] + [4])
        out = []
        for name, desc in rows:
            line = f"{name:<{width}}  {desc}".rstrip()
            out.append(line if len(line) <= 72 else line[:69] + "...")
        _emit("\n".join(out) if out else "(no scenarios)", None, "text")
        return 0
    if not args.name:
        args.parser.error("give a scenario NAME, or --list to see them")
    get, _catalog = _scenario_api()
    try:
        scenario = get(args.name)
    except (KeyError, ValueError) as e:
        raise CliError(e.args[0] if e.args else
                       f"no scenario named {args.name!r}") from None
    # the command's switches in the scenario layer's option names
    opts = {}
    if args.kernel is not None:
        opts["kernel"] = args.kernel
    if args.lazy:
        opts["strict"] = False
    if args.fast:
        opts["fast"] = True
    if args.bbml is not None:
        opts["bbml"] = args.bbml
    if args.no_sync:
        if not args.fast:
            args.parser.error("--no-sync goes with --fast")
        opts["sync_after"] = False
    if args.split_sync is not None:
        opts["split_sync"] = args.split_sync == "on"
    if args.personality is not None:
        opts["personality"] = args.personality
    if args.no_ttl_hints:
        opts["ttl_hints"] = False
    if args.speculate:
        opts["speculate"] = True
    try:
        run = scenario(**opts)
    except (ValueError, TypeError) as e:
        raise CliError(f"scenario {args.name!r}: {e}") from None
    except Exception as e:              # the model's refusals (ApiError)
        if type(e).__name__ != "ApiError":
            raise
        raise CliError(f"scenario {args.name!r}: {e}") from None
    try:
        from ..render.export import render_run
    except ImportError:
        raise CliError(NO_RENDER, 2) from None
    step = args.step
    if step is not None:
        n = len(run.events)
        if not -n <= step < n:
            raise CliError(f"--step {step} is outside this run's steps "
                           f"0..{n - 1}")
        step %= n
    try:
        data = render_run(run, args.format, step=step)
    except ValueError as e:
        raise CliError(str(e)) from None
    _emit(data, args.output, args.format)
    return 0


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
        sys.stderr.write(f"{PROG}: error: choose a command, scenario or "
                         f"replay (see '{PROG} --help')\n")
        return 2
    try:
        return args.func(args)
    except CliError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return e.status
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
