"""``iommu-viz replay LOG``: replay a log of IOMMU map/unmap activity.

    iommu-viz replay LOG [--fmt lpae|v7s] [--mtk] [--granule 4K]
                         [--kernel v5.4] [--ias BITS] [--device NAME]
                         [--format text|json|svg|png|perfetto] [--tree]
                         [--at N] [--rows N] [-o FILE]

Prints the summary (faults explained), the first problems and the
mappings; ``json`` gives the same as data, ``svg``/``png`` the page-table
tree with the faulting addresses marked, ``perfetto`` a trace of the log's
events on its own timestamps. A log with no map/unmap events (or a binary
file) is an error, exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..pgtable.common import KERNELS, SZ_4K, short_size
from . import CliError, _emit, parse_size

__all__ = ["register", "replay_json", "replay_text", "cmd_replay"]

REPLAY_FORMATS = ("text", "json", "svg", "png", "perfetto")
GRANULES = {"4K": SZ_4K, "16K": 1 << 14, "64K": 1 << 16}
#: Page-table formats a log can be replayed into (ingest.replay.FORMATS).
PGTABLE_FORMATS = ("lpae", "v7s")
#: What the reader understands, for the hint when a log has no events.
READ_FORMATS = ("ftrace iommu:map/iommu:unmap (any kernel's wording, "
                "behind an ftrace, trace-cmd or perf prefix), iommu.c "
                "pr_debug map/mapping/unmap this/unmapped lines")


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


def register(sub):
    """Add the ``replay`` command to the subparsers ``sub``."""
    rp = sub.add_parser(
        "replay", help="replay a log of IOMMU map/unmap activity",
        description="Replay the iommu:map/iommu:unmap ftrace events or the "
                    "iommu.c pr_debug lines of a log into the page-table "
                    "model; explain its IOMMU fault reports; print a "
                    "summary and the resulting mappings.")
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
                    help="text: summary, faults and mappings; json: the "
                         "same as data; svg/png: the page-table tree with "
                         "the faults marked; perfetto: a trace of the "
                         "events on the log's timestamps (default text)")
    rp.add_argument("--tree", action="store_true",
                    help="with --format text, also print the page-table tree")
    rp.add_argument("-o", "--output", metavar="FILE",
                    help="write to FILE instead of standard output (never "
                         "the log itself)")
    prog = rp.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true",
                      default=None, help="always show a progress bar")
    prog.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show a progress bar")
    rp.set_defaults(func=cmd_replay, parser=rp)
    return rp


# ---------------------------------------------------------------- output
def replay_json(rep, table=None, at=None) -> str:
    """The replay as JSON: settings, summary (faults included), the
    mapping runs (hex addresses), problems and refused requests. ASCII
    only (non-ASCII text of the log is escaped)."""
    from ..ingest.summary import mapping_runs
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
    return json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=True)


def replay_text(rep, table=None, at=None, rows=200) -> str:
    """The replay as plain ASCII text (<= 72 columns): summary, the
    faults, the first problems, then the mappings (collapsed runs)."""
    from ..ingest.summary import ascii_text, format_mappings
    out = [str(rep.summary)]
    if rep.summary.faults:
        out.append("")
        out.append(rep.summary.faults_text())
    for title, items in (("malformed lines", [str(p) for p in rep.problems]),
                         ("refused requests",
                          [f"line {ln}: {msg}" for ln, msg in rep.rejected])):
        if items:
            out.append("")
            out.append(f"{title} (first {min(5, len(items))}):")
            for s in items[:5]:
                s = ascii_text(s)
                out.append("  " + (s if len(s) <= 70 else s[:67] + "..."))
    out.append("")
    total = rep.summary.events
    if at is None:
        out.append(f"mappings after all {total} events:")
    else:
        out.append(f"mappings after the first {at} of {total} events:")
    out.append(format_mappings(table if table is not None else rep.table,
                               max_rows=rows or None))
    return ascii_text("\n".join(out))


def _replay_picture(rep, table, at, fmt):
    """The page-table tree (after ``at`` events, or all) with the faulting
    addresses marked: ``text``, ``svg`` or ``png``."""
    from ..render.export import to_png, to_svg
    from ..render.tree import tree_dot_faults, tree_text_faults
    snap = (table if table is not None else rep.table).snapshot()
    n = rep.summary.events if at is None else at
    kind = "" if rep.summary.fmt == "lpae" else f"{rep.summary.fmt}, "
    title = (f"replay: {kind}{rep.summary.kernel} era, after {n} of "
             f"{rep.summary.events} events")
    faults = rep.faults if at is None else [
        f for f in rep.faults if f.after_events <= at]
    if fmt == "text":
        return title + "\n" + tree_text_faults(snap, faults)
    dot = tree_dot_faults(snap, faults, title=title)
    return to_svg(dot) if fmt == "svg" else to_png(dot, dpi=96)


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _no_events(rep, name) -> CliError:
    s = rep.summary
    if rep.parsed.binary:
        return CliError(f"{name} is a binary file (it holds NUL bytes), not "
                        "a text log; give the text of a trace or of dmesg")
    faults = (f"; it has {len(s.faults)} fault report(s), but a fault is "
              "explained against the map/unmap events before it"
              if s.faults else "")
    return CliError(f"no IOMMU map/unmap events found in {name} "
                    f"({s.lines} lines read){faults}; read: {READ_FORMATS}")


def cmd_replay(args) -> int:
    from ..ingest.replay import replay
    from ..ingest.summary import ascii_text
    if args.log == "-":
        source = getattr(sys.stdin, "buffer", sys.stdin)
        name = "standard input"
    else:
        source = args.log
        name = ascii(args.log)
        if os.path.isdir(source):
            raise CliError(f"cannot read {name}: it is a directory")
        if args.output and os.path.exists(source) and \
                _same_file(args.output, source):
            raise CliError(f"-o {ascii(args.output)} is the log being read; "
                           "write the output to another file")
    try:
        rep = replay(source, granule=args.granule, kernel=args.kernel,
                     fmt=args.fmt, ias=args.ias, device=args.device,
                     progress=args.progress, mtk=args.mtk, at=args.at,
                     keep_events=True if args.format == "perfetto" else None)
    except OSError as e:
        raise CliError(f"cannot read {name}: {e.strerror or e}") from None
    except ValueError as e:
        msg = str(e)
        if msg.startswith("at ") and args.at is not None:
            msg = "--" + msg            # the option's own name
        raise CliError(ascii_text(msg)) from None
    if rep.summary.events == 0:
        raise _no_events(rep, name)
    table = rep.table_after       # None without --at
    if args.format == "text":
        data = replay_text(rep, table, args.at, args.rows)
        if args.tree:
            data += "\n\n" + _replay_picture(rep, table, args.at, "text")
    elif args.format == "json":
        data = replay_json(rep, table, args.at)
    elif args.format == "perfetto":
        from ..render.export import replay_perfetto_json
        data = json.dumps(replay_perfetto_json(rep), indent=1,
                          sort_keys=True)
    else:
        data = _replay_picture(rep, table, args.at, args.format)
    _emit(data, args.output, args.format)
    return 0
