"""``iommu-viz scenario``: render a named scenario.

    iommu-viz scenario NAME [--kernel v5.4] [--lazy] [--fast] [--bbml N]
                            [--format text|svg|png|perfetto|json|scenario|html]
                            [--step N] [-o FILE]
    iommu-viz scenario NAME --show-file
    iommu-viz scenario --list
"""

from __future__ import annotations

from ..pgtable.common import KERNELS
from ..sim.smmu import PERSONALITIES
from . import CliError, _emit

__all__ = ["add_parser", "render_output", "FORMATS"]

#: What ``scenario`` and ``run`` write: the renderers' formats, the run as
#: a scenario file, and the self-contained HTML stepper.
FORMATS = ("text", "svg", "png", "perfetto", "json", "scenario", "html")
NO_SCENARIOS = "scenarios are not available in this build"
NO_RENDER = "renderers are not available in this build"


def add_parser(sub):
    """Register the command on ``sub`` (argparse subparsers)."""
    sc = sub.add_parser(
        "scenario", help="render a named scenario",
        description="Render a named scenario (the 2019 thread's cases and "
                    "more) as text, a picture, a trace, a scenario file or "
                    "a stepping HTML page.")
    sc.add_argument("name", nargs="?", metavar="NAME",
                    help="scenario name (see --list)")
    sc.add_argument("--list", action="store_true",
                    help="list the scenarios with one-line descriptions")
    sc.add_argument("--show-file", action="store_true",
                    help="print the scenario's file, to copy and edit for "
                         "'iommu-viz run'")
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
    sc.add_argument("--bbml", type=int, choices=(0, 1, 2), default=None,
                    metavar="N", help="SMMU break-before-make level 0, 1 or 2")
    add_output_options(sc)
    sc.set_defaults(func=_cmd_scenario, parser=sc)
    return sc


def add_output_options(p):
    """--step, --format and -o, shared with ``run``."""
    p.add_argument("--step", type=int, default=None, metavar="N",
                   help="show the state after step N (default: the last; "
                        "negative counts from the end; html: the first "
                        "step shown)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="output format (default text); scenario: the run "
                        "as a scenario file; html: one self-contained page "
                        "that steps through the run")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE instead of standard output")


def render_output(run, fmt, step=None):
    """``run`` at ``step`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if step is not None:
        n = len(run.events)
        if not -n <= step < n:
            raise CliError(f"--step {step} is outside this run's steps "
                           f"0..{n - 1}")
        step %= n
    try:
        if fmt == "scenario":
            from ..scenarios import to_text
            return to_text(run)
        if fmt == "html":
            from ..render.stepper import stepper_html
            return stepper_html(run, step=step)
        from ..render.export import render_run
    except ImportError:
        raise CliError(NO_RENDER, 2) from None
    try:
        return render_run(run, fmt, step=step)
    except ValueError as e:
        raise CliError(str(e)) from None


def _scenario_api():
    try:
        from .. import scenarios
        get, catalog = scenarios.get, scenarios.catalog
    except (ImportError, AttributeError):
        raise CliError(NO_SCENARIOS, 2) from None
    return scenarios, get, catalog


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


def _options(args):
    """The command's switches in the scenario layer's option names."""
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
    return opts


def _cmd_scenario(args) -> int:
    if args.list:
        if args.name:
            args.parser.error("give either NAME or --list, not both")
        _mod, _get, catalog = _scenario_api()
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
    mod, get, _catalog = _scenario_api()
    try:
        scenario = get(args.name)
    except (KeyError, ValueError) as e:
        raise CliError(e.args[0] if e.args else
                       f"no scenario named {args.name!r}") from None
    if args.show_file:
        _emit(mod.named(args.name).text, args.output, "text")
        return 0
    opts = _options(args)
    try:
        run = scenario(**opts)
    except (ValueError, TypeError) as e:
        raise CliError(f"scenario {args.name!r}: {e}") from None
    _emit(render_output(run, args.format, args.step), args.output,
          args.format)
    return 0
