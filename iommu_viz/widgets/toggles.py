"""The Explorer's toggles in one table: label, one-sentence tooltip, place
(in front or under "More"), choices, and the rule that says when a toggle
cannot matter. A toggle that is one Simulation option takes its tooltip
from that option's ``help`` in :class:`~iommu_viz.sim.config.SimConfig`,
where the option is declared.

Whether a toggle can matter is decided in two ways, both from the model:

1. **Rules** (:attr:`Toggle.rules`): facts of the current options that make
   the option dead in the model, each with the source that says so (a
   kernel commit or the model's own docstring). They explain *why*, in
   kernel terms, and cost nothing.
2. **Running both values**: for a toggle no rule switches off, the session
   runs the scenario with every other value (:meth:`ExplorerSession.
   availability`) and compares steps and outcomes. When all runs are the
   same, the toggle cannot matter in this setting, and its tooltip says
   that both were run. This needs no rule to be right: it is the model's
   own answer. The runs are kept, so flipping the toggle later is instant.

``tests/widgets/test_session.py`` checks every rule against the second
way: where a rule disables a toggle, running both values must give the
same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..pgtable.common import KERNELS, era_at_least
from ..sim import PERSONALITIES
from ..sim.config import SimConfig

__all__ = ["Toggle", "TOGGLES", "FRONT", "MORE", "UNMAP_CHOICES", "FORMATS",
           "TOGGLE_NAMES", "rule_reason"]

#: The ``unmap`` choice: label -> (fast, sync_after).
UNMAP_CHOICES = {
    "iommu_unmap": (False, True),
    "iommu_unmap_fast + iotlb_sync": (True, True),
    "iommu_unmap_fast, no sync": (True, False),
}

#: The ``fmt`` toggle: label -> scenario option value.
FORMATS = {"LPAE": "lpae", "v7s": "v7s"}

_SPLIT_GONE = ("v6.13 never splits a block: a partial unmap of a block is "
               "refused (commit 33729a5fc0ca)",
               "https://github.com/torvalds/linux/commit/33729a5fc0ca")
_V7S_NO_TTL = ("v7s tables are used by arm-smmu (SMMUv1/v2) and non-Arm "
               "IOMMUs, whose drivers have no range invalidation and send "
               "no TTL hint (the model's Simulation docstring)",
               "https://elixir.bootlin.com/linux/v6.12/source/drivers/iommu/"
               "arm/arm-smmu/arm-smmu.c")
_NO_TTL_YET = ("arm-smmu-v3 sets TTL only with range invalidation, added in "
               "v5.7 (commit 6a481a95d4c1); this era's driver sends none",
               "https://github.com/torvalds/linux/commit/6a481a95d4c1")
_NT_LPAE = ("nT is a bit of LPAE block descriptors (SMMUv3.2 BBML1); v7s "
            "descriptors have none",
            "https://developer.arm.com/documentation/ihi0070/latest")


def _help(option: str) -> str:
    """The one-sentence help of SimConfig option ``option``: a toggle that
    is one Simulation option says what it is where the option is
    declared."""
    return SimConfig.option(option)["help"]


@dataclass(frozen=True)
class Toggle:
    """One control. ``kind``: ``check``, ``buttons`` or ``dropdown``;
    ``choices``: ``[(label, value), ...]`` for buttons and dropdowns;
    ``rules``: ``[(predicate(options), reason, source URL), ...]``;
    ``compare``: whether running both values may disable it."""

    name: str
    label: str
    kind: str
    tip: str
    front: bool = False
    choices: tuple = ()
    rules: tuple = field(default=())
    compare: bool = True


TOGGLES = {t.name: t for t in (
    Toggle("split_sync", "split syncs itself", "check",
           _help("split_sync"),
           front=True,
           rules=((lambda o: era_at_least(o["kernel"], (6, 13)),)
                  + _SPLIT_GONE,)),
    Toggle("unmap", "unmap", "dropdown",
           "How the caller unmaps: iommu_unmap (it syncs before it "
           "returns), or iommu_unmap_fast into a gather that the caller "
           "then flushes with iommu_iotlb_sync, or never flushes.",
           front=True, choices=tuple((k, k) for k in UNMAP_CHOICES)),
    Toggle("strict", "invalidation", "buttons",
           _help("strict"),
           front=True, choices=(("strict", True), ("lazy", False))),
    Toggle("fmt", "format", "buttons",
           _help("fmt"),
           choices=tuple(FORMATS.items()), compare=False),
    Toggle("kernel", "kernel", "dropdown",
           _help("kernel"),
           choices=tuple((k, k) for k in KERNELS), compare=False),
    Toggle("deferred_gather", "deferred gather", "check",
           _help("deferred_gather")),
    Toggle("bbml", "BBML", "dropdown",
           _help("bbml"),
           choices=(("BBML0", 0), ("BBML1", 1), ("BBML2", 2))),
    Toggle("personality", "SMMU", "dropdown",
           _help("personality"),
           choices=tuple((p, p) for p in PERSONALITIES)),
    Toggle("speculate", "speculative fill", "check",
           "Whether the SMMU walks and caches the neighbouring page "
           "speculatively, which the SMMUv3 architecture allows at any "
           "time (IHI0070, 3.21)."),
    Toggle("ttl_hints", "TTL hints honoured", "check",
           _help("ttl_hints"),
           rules=((lambda o: o.get("fmt", "lpae") == "v7s",) + _V7S_NO_TTL,
                  (lambda o: not era_at_least(o["kernel"], (5, 7)),)
                  + _NO_TTL_YET)),
    Toggle("split_nt", "nT split (experiment)", "check",
           _help("split_nt"),
           rules=((lambda o: o.get("fmt", "lpae") == "v7s",) + _NT_LPAE,
                  (lambda o: era_at_least(o["kernel"], (6, 13)),)
                  + _SPLIT_GONE)),
)}

FRONT = tuple(n for n, t in TOGGLES.items() if t.front)
MORE = tuple(n for n, t in TOGGLES.items() if not t.front)

#: Every control's name, the scenario chooser first.
TOGGLE_NAMES = ("scenario",) + tuple(TOGGLES)


def rule_reason(name: str, options: dict):
    """``(reason, source)`` of the first rule that switches toggle
    ``name`` off for ``options``, else None."""
    for pred, reason, source in TOGGLES[name].rules:
        if pred(options):
            return reason, source
    return None
