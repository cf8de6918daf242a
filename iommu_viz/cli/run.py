"""``iommu-viz run``: run a scenario file.

    iommu-viz run FILE [--set KEY=VALUE ...]
                       [--format text|svg|png|perfetto|json|scenario|html]
                       [--step N] [-o FILE]
    iommu-viz run FILE --matrix KEY=V1,V2 ... [--format text|json]

FILE is a scenario file (``-`` for standard input, or the name of a
shipped scenario); the format is described in docs/scenario-format.md.
A file that breaks a rule is reported as ``FILE:LINE: rule: detail`` with
exit status 2, before anything is written.
"""

from __future__ import annotations

import json
import os
import sys

from . import CliError, _emit
from .scenario import add_output_options, render_output

__all__ = ["add_parser"]

MATRIX_FORMATS = ("text", "json")


def add_parser(sub):
    """Register the command on ``sub`` (argparse subparsers)."""
    p = sub.add_parser(
        "run", help="run a scenario file",
        description="Run a scenario file (one IOMMU API call a line; see "
                    "docs/scenario-format.md) and render it, or tabulate "
                    "the outcomes the architecture allows for its labelled "
                    "accesses over several configurations (--matrix).")
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="scenario file ('-' for standard input, or a "
                        "shipped scenario's name)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one of the file's config options or "
                        "params (repeatable), e.g. --set kernel=v6.12")
    p.add_argument("--matrix", nargs="+", metavar="KEY=V1,V2",
                   help="run every combination of these values and print "
                        "the allowed outcomes of each labelled access, e.g. "
                        "--matrix kernel=v4.20,v5.4 bbml=0,2 strict=yes,no")
    add_output_options(p)
    p.set_defaults(func=_cmd_run, parser=p)
    return p


def _read(path):
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    if os.path.isdir(path):
        raise CliError(f"cannot read {path!r}: it is a directory")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except FileNotFoundError:
        from ..scenarios import names, named
        if path in names():
            return named(path).text, path + ".scn"
        raise CliError(f"cannot read {path!r}: no such file (nor a shipped "
                       "scenario: " + ", ".join(names()) + ")") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {path!r}: "
                       f"{getattr(e, 'strerror', None) or e}") from None


def _cmd_run(args) -> int:
    from ..scenarios import ScenarioError, matrix, parse, parse_axes
    if args.file is None and args.matrix and "=" not in args.matrix[-1]:
        args.file = args.matrix.pop()      # run --matrix k=a,b FILE
    if args.file is None:
        raise CliError("run: give a scenario FILE ('-' for standard "
                       "input)", 2)
    if args.matrix and args.format not in MATRIX_FORMATS:
        raise CliError(f"run: --matrix writes text or json, not "
                       f"--format {args.format}", 2)
    text, source = _read(args.file)
    try:
        sc = parse(text, source=source)
        overrides = {k: vals[0][1]
                     for k, vals in parse_axes(args.set, sc, "--set")}
        if args.matrix:
            if overrides:
                sc = _fixed(sc, overrides)
            m = matrix(sc, args.matrix)
            data = (json.dumps(m.to_json(), indent=1) if args.format == "json"
                    else m.text())
        else:
            run = sc.run(**overrides)
            data = None
    except ScenarioError as e:
        raise CliError(str(e), 2) from None
    if data is None:
        data = render_output(run, args.format, args.step)
    _emit(data, args.output, args.format)
    return 0


def _fixed(sc, overrides):
    """``sc`` with ``overrides`` made its defaults (for --set with
    --matrix)."""
    from dataclasses import replace
    config, params = sc.resolve(overrides)
    return replace(sc, config=config, params=params)
