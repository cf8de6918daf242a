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
                         [--format text|json|svg|png] [--tree]
                         [--at N] [--rows N] [-o FILE]

Errors are one line on standard error: exit status 1 for a failure (a file
that cannot be read, an unknown scenario), 2 for a usage error or a part
that this build does not have.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import IommuVizError
from ..pgtable.common import KERNELS, SZ_4K, short_size
from . import quiz as _quiz

__all__ = ["main", "parse_size"]

PROG = "iommu-viz"
REPLAY_FORMATS = ("text", "json", "svg", "png", "perfetto")

GRANULES = {"4K": SZ_4K, "16K": 1 << 14, "64K": 1 << 16}
#: Page-table formats a log can be replayed into (ingest.replay.FORMATS).
PGTABLE_FORMATS = ("lpae", "v7s")


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


def _granule(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if size not in GRANULES.values():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an LPAE granule; choose 4K, 16K or 64K")
    return size


def _pgtable_fmt(text: str) -> str:
    fmt = text.strip().lower()
    if fmt not in PGTABLE_FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a page-table format; choose "
            + " or ".join(PGTABLE_FORMATS))
    return fmt


def _count(text: str) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return n


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

    rp = sub.add_parser(
        "replay", help="replay a log of IOMMU map/unmap activity",
        description="Replay the iommu:map/iommu:unmap ftrace events or the "
                    "iommu.c pr_debug lines of a log into the page-table "
                    "model; print a summary and the resulting mappings.")
    rp.add_argument("log", metavar="LOG", help="log file ('-' for standard "
                    "input)")
    rp.add_argument("--fmt", type=_pgtable_fmt, default="lpae",
                    metavar="{lpae,v7s}",
                    help="page-table format: lpae (io-pgtable-arm) or v7s "
                         "(Armv7 short descriptors, 32-bit iova) (default "
                         "lpae)")
    rp.add_argument("--mtk", action="store_true",
                    help="with --fmt v7s: mtk_iommu's quirks (ARM_NS, "
                         "NO_PERMS, ARM_MTK_EXT), physical addresses above "
                         "4 GiB")
    rp.add_argument("--granule", type=_granule, default=SZ_4K,
                    help="translation granule: 4K, 16K or 64K (default 4K; "
                         "v7s has 4K only)")
    rp.add_argument("--kernel", choices=tuple(KERNELS), default="v5.4",
                    help="kernel era (default v5.4)")
    rp.add_argument("--ias", type=int, default=None, metavar="BITS",
                    help="input address size in bits: lpae 32..48 (default "
                         "48); v7s 32 (34 with --mtk from v6.12)")
    rp.add_argument("--device", metavar="NAME",
                    help="keep only the events of this dev= name")
    rp.add_argument("--at", type=_count, metavar="N",
                    help="show the page table after the first N events")
    rp.add_argument("--rows", type=_count, default=200, metavar="N",
                    help="mapping rows to print, 0 for all (default 200)")
    rp.add_argument("--format", choices=REPLAY_FORMATS, default="text",
                    help="text: summary and mappings; json: the same as "
                         "data; svg/png: the page-table tree (default text)")
    rp.add_argument("--tree", action="store_true",
                    help="with --format text, also print the page-table tree")
    rp.add_argument("-o", "--output", metavar="FILE",
                    help="write to FILE instead of standard output")
    prog = rp.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true",
                      default=None, help="always show a progress bar")
    prog.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show a progress bar")
    rp.set_defaults(func=_cmd_replay, parser=rp)
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
def replay_json(rep, table=None, at=None) -> str:
    """The replay as JSON: settings, summary, the mapping runs (hex
    addresses), problems and refused requests."""
    from ..ingest.replay import mapping_runs
    table = table if table is not None else rep.table
    doc = {
        "summary": rep.summary.to_dict(),
        "at_event": at,
        "mappings": [
            {"iova": f"{iova:#x}", "paddr": f"{pa:#x}",
             "pgsize": short_size(size), "count": n, "kind": kind}
            for iova, pa, size, n, kind in mapping_runs(table)],
        "problems": [{"line": p.lineno, "reason": p.reason, "text": p.text}
                     for p in rep.problems],
        "rejected": [{"line": ln, "reason": msg} for ln, msg in rep.rejected],
    }
    return json.dumps(doc, indent=1, sort_keys=False)


def replay_text(rep, table=None, at=None, rows=200) -> str:
    """The replay as plain text (<= 72 columns): summary, the first
    problems, then the mappings (collapsed runs)."""
    from ..ingest.replay import format_mappings
    out = [str(rep.summary)]
    for title, items in (("malformed lines", [str(p) for p in rep.problems]),
                         ("refused requests",
                          [f"line {ln}: {msg}" for ln, msg in rep.rejected])):
        if items:
            out.append("")
            out.append(f"{title} (first {min(5, len(items))}):")
            out.extend("  " + (s if len(s) <= 70 else s[:67] + "...")
                       for s in items[:5])
    out.append("")
    total = len(rep.events)
    if at is None:
        out.append(f"mappings after all {total} events:")
    else:
        out.append(f"mappings after the first {at} of {total} events:")
    out.append(format_mappings(table if table is not None else rep.table,
                               max_rows=rows or None))
    return "\n".join(out)


def _replay_picture(rep, table, at, fmt):
    """The page-table tree (after ``at`` events, or all) drawn by the tree
    renderer: ``text``, ``svg`` or ``png``."""
    if fmt == "perfetto":
        raise CliError("a replay has no timeline to export; --format "
                       "perfetto is for scenarios (use text, json, svg or "
                       "png)")
    try:
        from ..render.tree import tree_dot, tree_text
        from ..render.export import to_png, to_svg
    except ImportError:
        raise CliError(f"--format {fmt} for a replay needs the tree "
                       "renderer, which is not available in this build", 2) \
            from None
    snap = (table if table is not None else rep.table).snapshot()
    n = len(rep.events) if at is None else at
    kind = "" if rep.summary.fmt == "lpae" else f"{rep.summary.fmt}, "
    title = (f"replay: {kind}{rep.summary.kernel} era, after {n} of "
             f"{len(rep.events)} events")
    if fmt == "text":
        return title + "\n" + tree_text(snap)
    dot = tree_dot(snap, title=title)
    return to_svg(dot) if fmt == "svg" else to_png(dot, dpi=96)


def _cmd_replay(args) -> int:
    from ..ingest.replay import replay
    if args.log == "-":
        source = sys.stdin
        name = "standard input"
    else:
        source = args.log
        name = repr(args.log)
        if os.path.isdir(source):
            raise CliError(f"cannot read {name}: it is a directory")
    try:
        rep = replay(source, granule=args.granule, kernel=args.kernel,
                     fmt=args.fmt, ias=args.ias, device=args.device,
                     progress=args.progress, mtk=args.mtk)
    except OSError as e:
        raise CliError(f"cannot read {name}: {e.strerror or e}") from None
    except ValueError as e:
        raise CliError(str(e)) from None
    table = None
    if args.at is not None:
        if args.at > len(rep.events):
            raise CliError(f"--at {args.at} is beyond the log's "
                           f"{len(rep.events)} events")
        table = rep.table_at(args.at)
    if args.format == "text":
        data = replay_text(rep, table, args.at, args.rows)
        if args.tree:
            data += "\n\n" + _replay_picture(rep, table, args.at, "text")
    elif args.format == "json":
        data = replay_json(rep, table, args.at)
    else:
        data = _replay_picture(rep, table, args.at, args.format)
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
