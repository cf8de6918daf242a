"""The Explorer's state without any widget: runs, options, step, what the
last toggle changed, and predict mode with its score.

:class:`~iommu_viz.widgets.Explorer` lays this object out; tests and
scripts drive it directly::

    >>> s = ExplorerSession("seed", fast=True, sync_after=False, step=16)
    >>> s.caption_text[:40]
    'SMMU translation: device read 0x40001000'
    >>> s.set_option("split_sync", True)       # the same read, now step 19
    >>> s.step, s.sim.accesses[1].outcome
    (19, 'fault')
    >>> s.comparison.lines()[0]
    'outcome: read 0x40001000 (2nd), step 16 -> 19: stale -> fault'

Runs are kept (up to 48, the oldest dropped first), so flipping a toggle
back, or to a value :meth:`availability` already ran, re-runs nothing.
Each scenario remembers its own options and event: switching to another
scenario and back restores them.

A scenario is a shipped one's name, a scenario file's path, scenario
text or a :class:`~iommu_viz.scenarios.Scenario`: the file's ``config``
is the starting option set and each toggle replaces one key of it. A
toggle for a knob the file does not declare (``fast``/``sync_after``,
``speculate``: no ``param`` line) is disabled, saying so::

    >>> text = "\\n".join(["config kernel=v6.12",
    ...                    "map 0x40000000 0x80000000 2M",
    ...                    "unmap 0x40001000 4K", "access 0x40001000"])
    >>> f = ExplorerSession(text)
    >>> f.scenario, f.options["kernel"]
    ('(text)', 'v6.12')
    >>> f.static_reason("unmap")[:35]
    'This file does not use the fast or '

Predict mode (``predict=True``): before the first event of each device
access (its question step) the learner picks the outcomes they expect
(:meth:`answer`) or gives up (:meth:`reveal`); until then the step cannot
move past that question, and outcomes after the step are hidden.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .. import scenarios
from ..pgtable.common import KERNELS
from ..sim import PERSONALITIES
from ..sim.trace import OUTCOMES
from .compare import access_keys, compare_runs, match_step
from .toggles import FORMATS, TOGGLES, UNMAP_CHOICES, rule_reason

__all__ = ["ExplorerSession", "Score", "effective_options"]

_SIM_KEYS = ("fmt", "kernel", "strict", "bbml", "personality", "ttl_hints",
             "walk_cache", "tlb_entries", "split_sync", "deferred_gather",
             "split_nt")
_MAX_RUNS = 48
#: The toggles that switch a file's knobs (``param`` lines), not options.
_KNOB_TOGGLES = {"unmap": ("fast", "sync_after"), "speculate": ("speculate",)}


def era_split_sync(kernel: str) -> bool:
    """Whether the era's split syncs on its own: only v4.20 (b6b65ca20bc9
    for arm_lpae_split_blk_unmap; arm_v7s_split_blk_unmap likewise); the
    v5.4 series moved the page to the gather in both formats."""
    return kernel == "v4.20"


def effective_options(given: dict, sim) -> dict:
    """The full option set a run used: what was given, else what the
    scenario's own defaults made the run do (read back from the run's
    ``config`` and recorded ``ops``)."""
    opts = dict(scenarios.DEFAULTS)
    for k in _SIM_KEYS:
        if k in sim.config:
            opts[k] = sim.config[k]
    kinds = {op["op"] for op in sim.ops}
    opts["fast"] = given.get("fast", "unmap_fast" in kinds)
    if opts["fast"]:
        opts["sync_after"] = given.get("sync_after", "iotlb_sync" in kinds)
    else:
        opts["sync_after"] = given.get("sync_after", True)
    opts["speculate"] = given.get("speculate", "speculate" in kinds)
    opts.update(given)
    return opts


def unmap_label(opts: dict) -> str:
    """The UNMAP_CHOICES label of ``fast``/``sync_after``."""
    if not opts["fast"]:
        return "iommu_unmap"
    for label, pair in UNMAP_CHOICES.items():
        if pair == (True, bool(opts["sync_after"])):
            return label
    return "iommu_unmap"


def toggle_value(name: str, opts: dict):
    """What toggle ``name`` shows for options ``opts``."""
    if name == "unmap":
        return unmap_label(opts)
    if name == "split_sync":
        ss = opts["split_sync"]
        return era_split_sync(opts["kernel"]) if ss is None else bool(ss)
    if name in ("strict", "deferred_gather", "speculate", "ttl_hints",
                "split_nt"):
        return bool(opts.get(name, False))
    return opts[name]


@dataclass
class Score:
    """Predict mode's tally: ``correct`` answers of ``answered``, and
    questions revealed without an answer (``skipped``)."""

    correct: int = 0
    answered: int = 0
    skipped: int = 0

    def __str__(self):
        s = f"score {self.correct}/{self.answered}"
        return s + (f" ({self.skipped} revealed)" if self.skipped else "")


class ExplorerSession:
    """Headless state of one Explorer (see the module's docstring).

    ``scenario`` names a scenario of :func:`iommu_viz.scenarios.catalog`
    or is a scenario file's path, scenario text or a
    :class:`~iommu_viz.scenarios.Scenario` (shown as the file's name, or
    ``(text)``), ``options`` are its keyword options, ``step`` the step to show first
    (an int, or the first event whose kernel function contains the string
    or whose kind is it), ``predict`` turns predict mode on.
    """

    def __init__(self, scenario: str = "seed", step=None, predict=False,
                 **options):
        self.files: dict = {}                # shown name -> Scenario
        scenario = self._open(scenario)      # clear error for a bad name
        unknown = set(options) - set(scenarios.DEFAULTS)
        if unknown:
            raise ValueError("unknown Explorer option(s) "
                             + ", ".join(sorted(unknown)) + "; known: "
                             + ", ".join(sorted(scenarios.DEFAULTS)))
        self.predict = bool(predict)
        self._runs: OrderedDict = OrderedDict()
        self._avail: dict = {}
        self._memory: dict = {}              # scenario -> (options, key)
        self.scenario = scenario
        sim = self._run(scenario, options)
        self.options = effective_options(options, sim)
        self._remember_run(self._key(), sim)
        self.sim = sim
        self.error = ""
        self.comparison = None               # RunDiff from the last run
        self.changed = ""                    # what the last toggle did
        self.score = Score()
        self.answers: dict = {}              # (label, rank) -> verdict
        self._revealed: set = set()          # (label, rank) of this run
        self._step = 0
        self.step = step if step is not None else 0

    # ------------------------------------------------------------ files
    def _open(self, scenario) -> str:
        """The name to show for ``scenario`` (a shipped name, a path,
        text or a Scenario); a file is kept in :attr:`files`."""
        if isinstance(scenario, str) and scenario in scenarios.names():
            return scenario
        if isinstance(scenario, scenarios.Scenario):
            sc = scenario
        elif isinstance(scenario, str) and "\n" not in scenario and \
                not os.path.exists(scenario):
            raise ValueError(f"no scenario {scenario!r}: not a file, nor "
                             "one of " + ", ".join(scenarios.names()))
        elif isinstance(scenario, (str, Path)):
            sc = scenarios.load(scenario)
        else:
            raise ValueError(f"scenario {scenario!r} must be a scenario's "
                             "name, a file path, scenario text or a Scenario")
        for n in scenarios.names():
            if scenarios.named(n) is sc:
                return n
        name = ("(text)" if sc.source.startswith("<")
                else os.path.basename(sc.source))
        while name in scenarios.names() or (name in self.files
                                            and self.files[name] is not sc):
            name += "'"
        self.files[name] = sc
        return name

    def scenario_file(self, name: str | None = None):
        """The :class:`~iommu_viz.scenarios.Scenario` shown as ``name``
        (default: the current one)."""
        name = self.scenario if name is None else name
        if name in self.files:
            return self.files[name]
        return scenarios.named(name)

    def scenario_names(self) -> list:
        """The scenario chooser's entries: the shipped ones, then the
        files this session opened."""
        return scenarios.names() + list(self.files)

    def _run(self, scenario: str, options: dict):
        if scenario in self.files:
            return scenarios.run(self.files[scenario], **options)
        return scenarios.run(scenario, **options)

    def static_reason(self, name: str):
        """Why toggle ``name`` cannot matter whatever the run shows: a
        rule of TOGGLES (with its source), or a knob the file does not
        declare; None otherwise."""
        rule = rule_reason(name, self.options)
        if rule is not None:
            return f"{rule[0]} ({rule[1]})."
        knobs = _KNOB_TOGGLES.get(name, ())
        params = self.scenario_file().params
        if knobs and not any(k in params for k in knobs):
            return ("This file does not use the " + " or ".join(knobs)
                    + " knob (no param line declares it), so this toggle "
                    "changes nothing.")
        return None

    # ------------------------------------------------------------ runs
    def _key(self, scenario=None, options=None):
        o = self.options if options is None else options
        return (scenario or self.scenario,
                tuple(sorted((k, repr(v)) for k, v in o.items())))

    def _remember_run(self, key, sim):
        self._runs[key] = sim
        self._runs.move_to_end(key)
        while len(self._runs) > _MAX_RUNS:
            self._runs.popitem(last=False)

    def run_for(self, scenario: str, options: dict):
        """The run of ``scenario`` with ``options``, from the store or run
        now (and stored)."""
        key = self._key(scenario, options)
        sim = self._runs.get(key)
        if sim is None:
            sim = self._run(scenario, options)
            self._remember_run(key, sim)
        return sim

    def has_run(self, scenario: str, options: dict) -> bool:
        return self._key(scenario, options) in self._runs

    def _switch(self, scenario, options, step=None):
        """Make ``scenario`` with ``options`` current and show the same
        event as before (or ``step``). A run that raises leaves everything
        as it was, with the error in ``error``."""
        try:
            sim = self.run_for(scenario, options)
        except Exception as e:                  # shown, the old run stays
            self.error = f"{type(e).__name__}: {e}"
            return False
        self.error = ""
        old, old_step = self.sim, self.step
        same_scenario = scenario == self.scenario
        self.scenario, self.options, self.sim = scenario, dict(options), sim
        if same_scenario:
            new_step = (old_step if old is sim
                        else match_step(old, old_step, sim))
            self.comparison = compare_runs(old, sim)
        else:
            new_step = 0 if step is None else step
            self.comparison = None
        # what was already seen stays seen; the rest waits for its question
        seen = {k for k in self._revealed}
        self._revealed = set()
        for key, q in zip(access_keys(sim), self.questions()):
            if q < new_step or (key in seen and q <= new_step):
                self._revealed.add(key)
        self._step = min(new_step, len(sim.events) - 1)
        return True

    def set_option(self, name: str, value) -> None:
        """Set one option (a scenario option, or ``unmap`` to a key of
        UNMAP_CHOICES, or ``scenario``) and re-run; the step moves to the
        same event of the new run, and :attr:`comparison` says what
        changed."""
        if name == "scenario":
            self.set_scenario(value)
            return
        before = toggle_value(name, self.options) if name in TOGGLES else None
        opts = dict(self.options)
        if name == "unmap":
            if value not in UNMAP_CHOICES:
                raise ValueError(f"unmap {value!r} is not one of "
                                 + ", ".join(repr(c) for c in UNMAP_CHOICES))
            opts["fast"], opts["sync_after"] = UNMAP_CHOICES[value]
        elif name in scenarios.DEFAULTS:
            _check_value(name, value)
            opts[name] = value
        else:
            raise ValueError(f"no option {name!r}; choose one of "
                             + ", ".join(sorted(set(scenarios.DEFAULTS)
                                                | {"unmap", "scenario"})))
        if opts.get("fmt", "lpae") != "lpae":
            opts["split_nt"] = False      # nT is an LPAE block bit
        # the era's own behaviour is stored as None (not forced)
        if opts.get("split_sync") is not None and \
                opts["split_sync"] == era_split_sync(opts["kernel"]):
            opts["split_sync"] = None
        if self._switch(self.scenario, opts):
            label = TOGGLES[name].label if name in TOGGLES else name
            after = toggle_value(name, opts) if name in TOGGLES else value
            self.changed = f"{label}: {_show(before)} -> {_show(after)}"

    def set_scenario(self, name: str) -> None:
        """Switch scenario: its own options and event as it was left, or
        its defaults the first time."""
        if name not in self.files:
            name = self._open(name)
        if name == self.scenario:
            return
        self._memory[self.scenario] = (dict(self.options), self.step)
        if name in self._memory:
            opts, step = self._memory[name]
        else:
            opts = effective_options({}, self.run_for(name, {}))
            step = 0
        if self._switch(name, opts, step=step):
            self.changed = f"scenario: {name}"

    # ------------------------------------------------------------ steps
    def resolve_step(self, step) -> int:
        if isinstance(step, str):
            for ev in self.sim.events:
                if step in ev.func or step == ev.kind:
                    return ev.step
            raise ValueError(f"step {step!r}: no event of this run names "
                             "that function or kind")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"step {step!r} must be an int or a function "
                             "name")
        n = len(self.sim.events)
        if not -n <= step < n:
            raise ValueError(f"step {step} is outside this run's 0..{n - 1}")
        return step % n

    @property
    def step(self) -> int:
        """The step shown (an index into ``sim.events``). In predict mode
        it stops at the first question not yet answered."""
        return self._step

    @step.setter
    def step(self, value) -> None:
        value = self.resolve_step(value)
        if self.predict:
            for key, q in zip(access_keys(self.sim), self.questions()):
                if q <= value and key not in self._revealed:
                    value = q
                    break
        self._step = value

    @property
    def last_step(self) -> int:
        return len(self.sim.events) - 1

    def first(self):
        self.step = 0

    def prev(self):
        self.step = max(0, self.step - 1)

    def next(self):
        self.step = min(self.last_step, self.step + 1)

    def last(self):
        self.step = self.last_step

    @property
    def caption_text(self) -> str:
        """The current step's one-line caption (kernel function: what); at
        an open question, the question instead."""
        q = self.question()
        if q is not None:
            rw = "write" if q.write else "read"
            return (f"the device is about to {rw} 0x{q.iova:x}: which "
                    "outcomes does the architecture allow?")
        return self.sim.caption(self.step)

    # ------------------------------------------------------------ predict
    def questions(self) -> list[int]:
        """For each access of the run, its question step: the first event
        of the API call that makes the access (a fill comes before it)."""
        first = {}
        for ev in self.sim.events:
            first.setdefault(ev.op, ev.step)
        return [first[self.sim.events[a.step].op] for a in self.sim.accesses]

    def question(self):
        """The access the learner must predict at this step (predict mode,
        not yet revealed), else None."""
        if not self.predict:
            return None
        for a, key, q in zip(self.sim.accesses, access_keys(self.sim),
                             self.questions()):
            if q == self.step and key not in self._revealed:
                return a
        return None

    @property
    def view_step(self) -> int:
        """The step whose pictures are shown: at an open question, the
        step before it (the access has not happened yet)."""
        return max(0, self.step - 1) if self.question() is not None \
            else self.step

    def is_revealed(self, access) -> bool:
        """Whether ``access`` (of this run) may be shown with its outcome."""
        if not self.predict:
            return True
        i = self.sim.accesses.index(access)
        return access_keys(self.sim)[i] in self._revealed

    def answer(self, outcomes) -> dict:
        """Predict the open question's outcomes (an iterable of names of
        OUTCOMES); scores it, reveals it and moves to the access. Returns the verdict:
        ``picked``, ``allowed``, ``outcome`` (what this SMMU picked),
        ``correct`` (picked == allowed)."""
        a = self.question()
        if a is None:
            raise ValueError(f"no question at step {self.step}: "
                             + ("answered already" if self.predict
                                else "predict mode is off"))
        picked = set(outcomes)
        bad = picked - set(OUTCOMES)
        if bad or not picked:
            raise ValueError(f"outcomes {sorted(picked)!r}: pick one or more "
                             "of " + ", ".join(OUTCOMES))
        verdict = dict(picked=tuple(sorted(picked)),
                       allowed=tuple(sorted(a.allowed)), outcome=a.outcome,
                       correct=picked == set(a.allowed), step=a.step)
        key = access_keys(self.sim)[self.sim.accesses.index(a)]
        self.answers[key] = verdict
        self.score.answered += 1
        self.score.correct += verdict["correct"]
        self._revealed.add(key)
        self._step = a.step                   # show the access itself
        return verdict

    def reveal(self) -> None:
        """Show the open question's outcome without an answer (counted as
        revealed, not scored)."""
        a = self.question()
        if a is None:
            return
        self._revealed.add(access_keys(self.sim)[self.sim.accesses.index(a)])
        self.score.skipped += 1
        self._step = a.step

    def verdict_for(self, access):
        """The learner's verdict on ``access`` (this run), if answered."""
        i = self.sim.accesses.index(access)
        return self.answers.get(access_keys(self.sim)[i])

    # ------------------------------------------------------------ toggles
    def alternatives(self, name: str) -> list:
        """``[(value, options), ...]``: the option sets toggle ``name``
        would lead to from the current ones, one per other value."""
        t = TOGGLES[name]
        cur = toggle_value(name, self.options)
        values = ([not cur] if t.kind == "check" else
                  [v for _, v in t.choices if v != cur])
        out = []
        for v in values:
            opts = dict(self.options)
            if name == "unmap":
                opts["fast"], opts["sync_after"] = UNMAP_CHOICES[v]
            else:
                opts[name] = v
            if opts.get("split_sync") is not None and \
                    opts["split_sync"] == era_split_sync(opts["kernel"]):
                opts["split_sync"] = None
            out.append((v, opts))
        return out

    def pending_alternatives(self) -> list:
        """Option sets :meth:`availability` still has to run (cheapest
        first: the front toggles')."""
        out = []
        for name, t in TOGGLES.items():
            if not t.compare or self.static_reason(name):
                continue
            for _, opts in self.alternatives(name):
                if not self.has_run(self.scenario, opts):
                    out.append(opts)
        return out

    def availability(self) -> dict:
        """``{toggle: None or why it cannot matter now}`` for every toggle
        of TOGGLES. A rule's reason names its source; otherwise a toggle
        whose every other value gives the same steps and outcomes (run and
        compared) cannot matter either."""
        key = self._key()
        if key in self._avail:
            return self._avail[key]
        out = {}
        mine = _signature(self.sim)
        for name, t in TOGGLES.items():
            why = self.static_reason(name)
            if why is not None:
                out[name] = why
                continue
            if not t.compare:
                out[name] = None
                continue
            same = True
            for _, opts in self.alternatives(name):
                try:
                    other = self.run_for(self.scenario, opts)
                except Exception:
                    same = False            # an error is a difference
                    break
                if _signature(other) != mine:
                    same = False
                    break
            out[name] = (None if not same else
                         "In this scenario with these options every value "
                         "gives the same steps and outcomes (the Explorer "
                         "ran them all and compared).")
        self._avail[key] = out
        while len(self._avail) > _MAX_RUNS:
            self._avail.pop(next(iter(self._avail)))
        return out


def _signature(sim):
    """What a learner can see of a run, less the first event's text (it
    names every option): events and access outcomes."""
    return (tuple((e.actor, e.kind, e.func, e.time_us,
                   e.text if e.step else "") for e in sim.events),
            tuple((a.step, a.outcome, tuple(sorted(a.allowed)), a.paddr)
                  for a in sim.accesses))


def _show(v) -> str:
    if v is True:
        return "on"
    if v is False:
        return "off"
    return str(v)


def _check_value(name, value):
    if name == "fmt" and value not in FORMATS.values():
        raise ValueError(f"fmt {value!r} is not one of "
                         + ", ".join(repr(f) for f in FORMATS.values()))
    if name == "kernel" and value not in KERNELS:
        raise ValueError(f"kernel {value!r} is not one of "
                         + ", ".join(KERNELS))
    if name == "personality" and value not in PERSONALITIES:
        raise ValueError(f"personality {value!r} is not one of "
                         + ", ".join(PERSONALITIES))
    if name == "bbml" and value not in (0, 1, 2):
        raise ValueError(f"bbml {value!r} must be 0, 1 or 2")
    if name == "split_sync" and value not in (None, True, False):
        raise ValueError(f"split_sync {value!r} must be None, True or False")
