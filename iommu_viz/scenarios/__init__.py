"""Scenarios: cases written as plain-text files, one IOMMU API call a line.

A scenario file (grammar and examples in ``docs/scenario-format.md``) is
read with :func:`load` or :func:`parse` into a :class:`Scenario`; its
``run(**overrides)`` executes it on a fresh :class:`~iommu_viz.Simulation`
and ``to_text(sim)`` (or ``sim.to_scenario()``) writes any run back as a
file. :func:`matrix` runs one file over several configurations and
tabulates the outcomes the architecture allows for its labelled accesses.

The named scenarios (the 2019 thread's cases and more) are such files,
shipped in ``iommu_viz/scenarios/files``; :func:`named` loads one,
:func:`catalog` lists them. For the widgets and notebooks each is also a
function taking the same keyword options: Simulation options (``fmt``,
``kernel``, ``strict``, ``bbml``, ``personality``, ``ttl_hints``,
``split_sync``, ``deferred_gather``, ``split_nt``, ...) and the file's
params, its knobs:

``fast``        use ``iommu_unmap_fast`` (and ``sync_after``) instead of
                ``iommu_unmap``
``sync_after``  with ``fast``: whether the caller calls ``iotlb_sync``
``speculate``   the SMMU speculatively caches a neighbouring page

A knob a file does not declare is ignored (``strict-vs-lazy`` has no
``fast``), as the functions always did.

Example::

    >>> from iommu_viz import scenarios
    >>> sim = scenarios.get("seed")(kernel="v5.4", fast=True, sync_after=False)
    >>> [a.outcome for a in sim.accesses]     # before unmap, page, neighbour, ...
    ['translated', 'stale', 'translated', 'stale', 'translated']
    >>> [name for name, _ in scenarios.catalog()][:2]
    ['seed', 'seed-conflict']
    >>> sc = scenarios.named("seed")
    >>> sc.params
    {'fast': False, 'sync_after': True, 'speculate': False}
    >>> sorted(sc.run(fast=True, sync_after=False).accesses[1].allowed)
    ['fault', 'stale']
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from .format import (ALIASES, OPS, Op, Scenario, ScenarioError,
                     labelled_accesses, parse, parse_value, sim_options,
                     to_text)
from .matrix import Matrix, matrix, parse_axes

__all__ = ["Scenario", "ScenarioError", "Op", "Matrix", "load", "parse",
           "to_text", "labelled_accesses", "named", "names", "catalog", "get", "run", "matrix",
           "parse_axes", "parse_value", "sim_options", "DEFAULTS", "OPS",
           "ALIASES", "seed", "seed_conflict", "strict_vs_lazy",
           "vfio_refuses", "gigabyte_split", "ttl_split"]

BLOCK_IOVA = 0x40000000
BLOCK_PA = 0x80000000
PAGE = BLOCK_IOVA + 0x1000       # the 4K page unmapped out of the block
NEIGHBOUR = BLOCK_IOVA + 0x2000  # a page that stays mapped

#: The knobs the named files declare (``param`` lines), at their defaults.
KNOBS = {"fast": False, "sync_after": True, "speculate": False}
#: The options the widgets offer, at Simulation's defaults or the knobs':
#: the keys ``run`` has always taken.
DEFAULTS = {k: KNOBS[k] if k in KNOBS else sim_options()[k] for k in (
    "fmt", "kernel", "strict", "fast", "sync_after", "split_sync",
    "deferred_gather", "bbml", "personality", "ttl_hints", "walk_cache",
    "tlb_entries", "speculate", "split_nt")}

#: The shipped files' order in :func:`catalog`; any other file follows.
_ORDER = ("seed", "seed-conflict", "strict-vs-lazy", "vfio-refuses",
          "gigabyte-split", "ttl-split")
_SUFFIX = ".scn"


def _files():
    return resources.files(__name__) / "files"


def names() -> list:
    """The shipped scenarios' names, in catalog order."""
    found = sorted(p.name[:-len(_SUFFIX)] for p in _files().iterdir()
                   if p.name.endswith(_SUFFIX))
    return [n for n in _ORDER if n in found] + \
        [n for n in found if n not in _ORDER]


def _unknown(name):
    return ValueError(f"no scenario {name!r}; choose one of "
                      + ", ".join(names()))


@functools.lru_cache(maxsize=None)
def named(name: str) -> Scenario:
    """The shipped scenario file ``name`` (see :func:`names`), parsed."""
    if name not in names():
        raise _unknown(name)
    text = (_files() / (name + _SUFFIX)).read_text(encoding="utf-8")
    return parse(text, source=name + _SUFFIX)


def load(path_or_text) -> Scenario:
    """A scenario from a file path (``str`` or ``Path``), the name of a
    shipped scenario, or scenario text itself (anything with a newline)."""
    if isinstance(path_or_text, Path):
        return parse(path_or_text.read_text(encoding="utf-8"),
                     source=str(path_or_text))
    text = str(path_or_text)
    if "\n" in text:
        return parse(text)
    if text in names():
        return named(text)
    if os.path.exists(text):
        return load(Path(text))
    raise ValueError(f"{text!r} is neither a scenario file nor a shipped "
                     "scenario (" + ", ".join(names()) + ")")


def catalog():
    """``[(name, one-line description), ...]`` in a fixed order."""
    out = []
    for n in names():
        text = named(n).description
        out.append((n, text.split(". ")[0].rstrip(".") + "."))
    return out


def _legacy_options(name, sc, kw):
    """Map the widget options onto the file: knobs it does not declare
    are dropped; unknown names are refused as before."""
    known = set(DEFAULTS) | set(sim_options()) | set(ALIASES)
    unknown = set(kw) - known - set(sc.params)
    if unknown:
        raise ValueError("unknown scenario option(s): "
                         + ", ".join(sorted(unknown)) + "; known: "
                         + ", ".join(sorted(DEFAULTS)))
    return {k: v for k, v in kw.items() if k in sc.params or k not in KNOBS}


def _function(name):
    def scenario(**kw):
        sc = named(name)
        return sc.run(**_legacy_options(name, sc, kw))
    scenario.__name__ = scenario.__qualname__ = name.replace("-", "_")
    scenario.__doc__ = (f"Run the shipped scenario {name!r}: see "
                        f"``iommu-viz scenario {name} --show-file``.")
    return scenario


def get(name: str):
    """The scenario ``name`` as a function of keyword options."""
    if name not in names():
        raise _unknown(name)
    return _function(name)


def run(name, **kw):
    """Run scenario ``name`` (or a :class:`Scenario`) with options ``kw``;
    the knobs of :data:`KNOBS` the file does not declare are ignored."""
    if isinstance(name, Scenario):
        return name.run(**_legacy_options(name.source, name, kw))
    return get(name)(**kw)


seed = _function("seed")
seed_conflict = _function("seed-conflict")
strict_vs_lazy = _function("strict-vs-lazy")
vfio_refuses = _function("vfio-refuses")
gigabyte_split = _function("gigabyte-split")
ttl_split = _function("ttl-split")
