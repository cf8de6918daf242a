"""Seeded exercises, made the way the OSTEP simulators make theirs: a seed
picks a short random scenario (a 2 MiB block and maybe a small buffer
mapped, part of the block unmapped with ``iommu_unmap`` or
``iommu_unmap_fast`` with or without a sync, a speculative fill, labelled
device accesses, time passing in lazy mode) on a random system (kernel
era, strict or lazy, BBML level, SMMU personality) and asks, for each
labelled access, which outcomes the architecture allows, and which
cached translations the TLB still holds at the end.

The answers are the model's: the scenario is printed in the scenario-file
syntax (``docs/scenario-format.md``), and that text is what runs: it is
read by :func:`iommu_viz.scenarios.parse` and executed by
:meth:`~iommu_viz.scenarios.Scenario.run` on a fresh
:class:`~iommu_viz.Simulation`. Every sentence of the reasoning is
built from the run's events and states (which call wrote what, which
command removed which entry, whether a CMD_SYNC completed, what the BBML
level lets a TLB with two matching entries do). Nothing is typed.

The same seed gives the same problem on every machine: the only source of
randomness is ``random.Random(seed)``, and nothing is ordered by a set or
a hash.

The scenario is kept as data (a config dict and a list of op dicts) and
printed in the plain-text scenario syntax (``config ...``, ``map IOVA
PADDR SIZE``, ``A1: access IOVA``, ...); pasted into a file, it runs with
``iommu-viz run FILE`` to the same answers.

Example::

    >>> p = make_problem(7)
    >>> p.seed, len(p.labels) > 0
    (7, True)
    >>> p.text() == make_problem(7).text()
    True
    >>> a = p.answers()
    >>> [x.label for x in a.accesses] == list(p.labels)
    True
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass, field

from .pgtable.common import KERNELS, SZ_2M, SZ_4K, short_size
from .scenarios.format import format_value, labelled_accesses, op_line, parse

__all__ = ["OUTCOMES", "LETTERS", "Problem", "Answers", "AccessAnswer",
           "TlbAnswer", "make_problem", "check_seed", "build",
           "scenario_text", "run_scenario", "cmd_issuer"]

#: The outcomes a question offers, in the order they are listed.
OUTCOMES = ("translated", "fault", "stale", "conflict")
#: One letter for each outcome (the scenario matrix's legend).
LETTERS = {"translated": "T", "fault": "F", "stale": "S", "conflict": "C"}
#: Personalities the generator draws from (see iommu_viz.sim.smmu).
PERSONALITIES = ("typical", "adversarial", "coherent")
WIDTH = 72
MAX_SEED = 2 ** 63 - 1


def check_seed(seed) -> int:
    """``seed`` as an int, or ``ValueError`` naming the value and the rule
    (a whole number from 0 to 2**63-1; text such as ``'42'`` is read)."""
    if isinstance(seed, bool):
        seed = None
    if isinstance(seed, str):
        try:
            seed = int(seed.strip(), 10)
        except ValueError:
            raise ValueError(f"seed {seed!r} is not a whole number; write "
                             "one from 0 to 2**63-1, e.g. 42") from None
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed!r} is not a whole number from 0 to "
                         "2**63-1")
    return seed


# ---------------------------------------------------------------- scenario
def scenario_text(config: dict, ops) -> str:
    """The scenario in the plain-text syntax: one op a line, ``#``
    comments, ``LABEL:`` before a labelled access. The ``config`` line
    names the era, the mode, BBML and the personality, then any other
    Simulation option ``config`` holds (``ttl_hints=no``).

    >>> print(scenario_text(dict(kernel="v5.4", strict=True, bbml=0,
    ...                          personality="typical"),
    ...     [dict(op="map", iova=0x40000000, paddr=0x80000000, size=SZ_2M),
    ...      dict(op="access", iova=0x40001000, label="A1")]))
    config kernel=v5.4 strict bbml=0 smmu=typical
    map 0x40000000 0x80000000 2M
    A1: access 0x40001000
    """
    mode = "strict" if config.get("strict", True) else "lazy"
    head = (f"config kernel={config['kernel']} {mode} "
            f"bbml={config.get('bbml', 0)} "
            f"smmu={config.get('personality', 'typical')}")
    for k, v in config.items():
        if k not in ("kernel", "strict", "bbml", "personality"):
            head += f" {k}={format_value(k, v)}"
    lines = [head]
    lines += [op_line(op) for op in ops]
    return "\n".join(lines)


def run_scenario(text: str, source: str = "<quiz>"):
    """Parse ``text`` (the scenario syntax :func:`scenario_text` writes)
    with :func:`iommu_viz.scenarios.parse` and run it
    (:meth:`~iommu_viz.scenarios.Scenario.run`); returns the simulation
    and ``{label: Access}`` for the labelled accesses. A text the parser
    or the model refuses raises :class:`~iommu_viz.scenarios.ScenarioError`
    naming ``source`` and the line."""
    sim = parse(text, source=source).run()
    return sim, labelled_accesses(sim)


_PAGE_INDEXES = tuple(range(1, 511))       # the block's inner pages
_BUF_PAGES = tuple(range(4, 4096, 4))


def _generate(rng: random.Random):
    """(config, ops) drawn from ``rng``; every draw is from a tuple in a
    fixed order, so a seed means the same thing everywhere."""
    kernels = tuple(KERNELS)
    config = dict(kernel=rng.choice(kernels), strict=rng.random() < 0.5,
                  bbml=rng.choice((0, 1, 2)),
                  personality=rng.choice(PERSONALITIES))
    block = 0x40000000 + rng.randrange(16) * SZ_2M
    block_pa = 0x80000000 + rng.randrange(64) * SZ_2M
    idx = rng.choice(_PAGE_INDEXES)             # the page unmapped
    page = block + idx * SZ_4K
    neighbour = page + rng.choice((-1, 1)) * SZ_4K
    ops = [dict(op="map", iova=block, paddr=block_pa, size=SZ_2M)]
    buf = None
    if rng.random() < 0.6:                      # a small buffer elsewhere
        npages = rng.choice((1, 2, 4))
        buf = 0x10000000 + rng.randrange(1, 256) * 4 * SZ_4K
        buf_pa = 0x90000000 + rng.choice(_BUF_PAGES) * SZ_4K
        ops.append(dict(op="map", iova=buf, paddr=buf_pa,
                        size=npages * SZ_4K))
    ops.append(dict(op="access", iova=block + rng.randrange(512) * SZ_4K))
    if buf is not None:
        ops.append(dict(op="access", iova=buf))
    how = rng.choice(("unmap", "fast+sync", "fast"))
    if how == "unmap":
        ops.append(dict(op="unmap", iova=page, size=SZ_4K))
    else:
        ops.append(dict(op="gather", name="g"))
        ops.append(dict(op="unmap_fast", iova=page, size=SZ_4K, gather="g"))
    if rng.random() < 0.7:
        ops.append(dict(op="speculate", iova=neighbour))
    labels = iter(f"A{i}" for i in range(1, 10))
    ops.append(dict(op="access", iova=page, label=next(labels)))
    ops.append(dict(op="access", iova=neighbour, label=next(labels)))
    if buf is not None and rng.random() < 0.5:
        ops.append(dict(op="unmap", iova=buf, size=npages * SZ_4K))
        ops.append(dict(op="access", iova=buf, label=next(labels)))
    if how == "fast+sync":
        ops.append(dict(op="sync", gather="g"))
        ops.append(dict(op="access", iova=rng.choice((page, neighbour)),
                        label=next(labels)))
    if not config["strict"] and rng.random() < 0.6:
        ops.append(dict(op="advance", ms=rng.choice((4, 11))))
        last = buf if buf is not None and rng.random() < 0.5 else page
        ops.append(dict(op="access", iova=last, label=next(labels)))
    return config, ops


# ---------------------------------------------------------------- answers
@dataclass(frozen=True)
class AccessAnswer:
    """One labelled access: the outcomes the architecture allows (in
    :data:`OUTCOMES` order), the one the personality picked, and the
    reasoning, sentence by sentence, built from the run."""

    label: str
    iova: int
    allowed: tuple
    picked: str
    reasons: tuple

    @property
    def letters(self) -> str:
        return "".join(LETTERS[o] for o in self.allowed)


@dataclass(frozen=True)
class TlbAnswer:
    """The TLB question: every translation the run cached (``candidates``,
    ``(key, words)`` in the order first cached), the keys still held at the
    end (``remaining``), and a reason for each candidate."""

    candidates: tuple
    remaining: tuple
    reasons: tuple


@dataclass(frozen=True)
class Answers:
    """What the model says about a :class:`Problem`."""

    accesses: tuple
    tlb: TlbAnswer

    def access(self, label) -> AccessAnswer:
        for a in self.accesses:
            if a.label == label:
                return a
        raise KeyError(f"no labelled access {label!r}")


def _entry_key(e):
    return (e.iova, e.size, e.level, e.paddr)


def _entry_words(e, granule):
    kind = "block" if e.size > granule else "page"
    return (f"{short_size(e.size)} {kind} 0x{e.iova:x} -> 0x{e.paddr:x} "
            f"(L{e.level})")


def _story(sim, start, stop):
    """The events from step ``start`` up to (not including) ``stop`` a
    reader needs: API calls and returns, the split's table writes, gather
    and flush-queue activity, completed syncs, TLB fills, invalidations
    and evictions, warnings."""
    keep = {"call", "return", "table_fill", "warn", "add_page",
            "gather_sync", "gather_drop", "fq_add", "fq_full", "fq_timeout",
            "fq_free", "sync_done", "fill", "no_fill", "invalidate",
            "ttl_miss", "evict", "advance"}
    out = []
    for ev in sim.events[start:stop]:
        if ev.kind not in keep:
            continue
        if ev.kind == "call" and ev.func == "iommu_map":
            continue
        if ev.kind == "sync_done" and not ev.detail.get("completed"):
            continue
        out.append(f"step {ev.step}: {ev.text}")
    return out


def cmd_issuer(sim, inv):
    """The driver function that queued the command an ``invalidate``
    event carried out: the last ``cmd_issue`` of that command in the
    same API call."""
    op = inv.func.removeprefix("SMMU executes ")
    for ev in reversed(sim.events[:inv.step]):
        if ev.op != inv.op:
            break
        if ev.kind == "cmd_issue" and ev.detail.get("op") == op:
            return ev.func
    return "?"


def _why_still_cached(sim, state, entry, iova, since):
    """Why ``entry`` (a TlbEntry of ``state``) is still cached."""
    if entry.pending:
        for ev in reversed(sim.events[entry.inserted:state.step]):
            if ev.kind == "cmd_issue" and ev.detail.get("op", "").startswith(
                    "CMD_TLBI"):
                return (f"An invalidation was queued at step {ev.step} "
                        f"({ev.detail['cmd']}, by {ev.func}), but no "
                        "CMD_SYNC has completed since, so the SMMU may "
                        "still use the entry: a TLBI is only known to be "
                        "complete when a later CMD_SYNC completes.")
    for ev in reversed(sim.events[since:state.step]):
        if ev.kind == "ttl_miss" and ev.detail.get("iova") == entry.iova \
                and ev.detail.get("level") == entry.level:
            return (f"At step {ev.step} a TLBI with a TTL hint completed: "
                    f"{ev.text}.")
    why = []
    for g in state.gathers:
        if g.start <= iova < g.end:
            why.append(f"0x{iova:x} waits in gather #{g.id} "
                       f"(0x{g.start:x}..0x{g.end:x}): its TLBI is issued "
                       "only when iommu_iotlb_sync runs on that gather.")
    for q in state.flush_queue:
        if q.iova <= iova < q.iova + q.size or entry.iova <= q.iova < \
                entry.iova + entry.size:
            due = state.fq_deadline_us
            when = (f" when its timer fires at {due / 1000:g} ms (now "
                    f"{state.time_us / 1000:g} ms)") if due is not None else ""
            why.append(f"0x{q.iova:x} waits in the flush queue: the whole "
                       f"IOTLB is invalidated{when}.")
            break
    if not why:
        why.append("No invalidation that removes it has been issued.")
    return " ".join(why)


def _bbml_rule(sim, entries):
    names = " and ".join(_entry_words(e, sim.granule) for e in entries)
    if sim.personality == "coherent":
        return (f"{names} both translate it, but a QEMU-like SMMU never "
                "reports a TLB conflict.")
    if sim.bbml == 2:
        return (f"{names} both translate it; with BBML2 the SMMU returns "
                "the old or the new translation, never a conflict.")
    nt = " (neither came from a block marked nT)" if sim.bbml == 1 else ""
    return (f"{names} both translate it; with BBML{sim.bbml}{nt} the "
            "SMMU may report a TLB conflict (F_TLB_CONFLICT, event 0x20).")


def _access_reasons(sim, access, since):
    state = sim.states[access.step]
    matches = [e for e in state.tlb if e.covers(access.iova)]
    matches.sort(key=lambda e: (e.level, e.inserted))
    reasons = []
    story = _story(sim, since, access.step)
    if story:
        reasons.append("Since the previous question: " + "; ".join(story)
                       + ".")
    for o, pa, source in access.options:
        if source == "walk":
            if o == "translated":
                words = (f"A walk of the tables now gives 0x{pa:x}: "
                         "translated.")
            else:
                words = (f"A walk of the tables finds no valid descriptor "
                         f"for 0x{access.iova:x}: fault (F_TRANSLATION, "
                         "event 0x10); faults are never cached.")
            if matches:
                words += (" The SMMU may drop a cached entry at any time, "
                          "so the walk's answer is allowed too.")
            reasons.append(words)
        elif source == "tlb:multi-hit":
            reasons.append(_bbml_rule(sim, matches))
        else:
            e = next(x for x in matches
                     if source == f"tlb:{short_size(x.size)}@0x{x.iova:x}")
            how = "speculatively" if e.speculative else "by a walk"
            head = (f"The TLB holds the {_entry_words(e, sim.granule)}, "
                    f"cached {how} at step {e.inserted}.")
            if o == "stale":
                reasons.append(
                    f"{head} The tables no longer map 0x{access.iova:x} "
                    f"that way, so using it is stale (reaches 0x{pa:x}). "
                    + _why_still_cached(sim, state, e, access.iova, since))
            elif o == "translated":
                reasons.append(f"{head} It matches the tables: translated "
                               f"(0x{pa:x}).")
            else:
                reasons.append(f"{head} It does not allow this access: {o}.")
    if len(matches) > 1 and "conflict" not in access.allowed:
        reasons.append(_bbml_rule(sim, matches))
    if sim.personality == "coherent" and matches:
        reasons.append("A QEMU-like SMMU carries out commands as they are "
                       "queued and uses its cached entry when it has one, "
                       "so a walk's answer is not an option.")
    allowed = [o for o in OUTCOMES if o in access.allowed]
    reasons.append(f"Allowed: {', '.join(allowed)}. This SMMU "
                   f"({sim.personality}) picked: {access.outcome}.")
    return tuple(reasons)


def _tlb_answer(sim):
    fills = {}
    for ev in sim.events:
        if ev.kind == "fill":
            d = ev.detail
            key = (d["iova"], d["size"], d["level"], d["paddr"])
            fills.setdefault(key, ev.step)
    end = sim.state
    kept = {_entry_key(e): e for e in end.tlb}
    candidates, reasons = [], []
    for key in fills:
        iova, size, level, paddr = key
        kind = "block" if size > sim.granule else "page"
        words = (f"{short_size(size)} {kind} 0x{iova:x} -> 0x{paddr:x} "
                 f"(L{level})")
        candidates.append((key, words))
        if key in kept:
            e = kept[key]
            what = "still cached, and stale" if e.stale else "still cached"
            reasons.append(f"{words}: {what}; nothing removed it.")
            continue
        gone = "?"
        for ev in sim.events:
            if ev.kind == "invalidate" and (iova, size, level) in \
                    [tuple(r) for r in ev.detail.get("removed", ())]:
                gone = (f"removed at step {ev.step} by "
                        f"{ev.func.removeprefix('SMMU executes ')} "
                        f"(queued by {cmd_issuer(sim, ev)})")
            elif ev.kind == "evict" and f"0x{iova:x}" in ev.text:
                gone = f"evicted at step {ev.step} ({ev.func})"
        reasons.append(f"{words}: {gone}.")
    remaining = tuple(k for k, _ in candidates if k in kept)
    return TlbAnswer(tuple(candidates), remaining, tuple(reasons))


def _answers(sim, labelled):
    out = []
    since = 0
    for label, a in labelled.items():
        since_step = since
        out.append(AccessAnswer(
            label, a.iova, tuple(o for o in OUTCOMES if o in a.allowed),
            a.outcome, _access_reasons(sim, a, since_step)))
        since = a.step + 1
    return Answers(tuple(out), _tlb_answer(sim))


# ---------------------------------------------------------------- problem
@dataclass(frozen=True)
class Problem:
    """One exercise: the seed, the system (``config``, Simulation
    keywords) and the scenario (``ops``). ``text()`` asks it,
    ``answers()`` runs the model, ``text(answers=True)`` adds them."""

    seed: int
    config: dict = field(hash=False)
    ops: tuple = field(hash=False)

    @property
    def labels(self) -> tuple:
        return tuple(op["label"] for op in self.ops if op.get("label"))

    def scenario(self) -> str:
        return scenario_text(self.config, self.ops)

    def run(self):
        """``(Simulation, {label: Access})``, a fresh run of the printed
        scenario (:meth:`scenario`) through the scenario parser."""
        return run_scenario(self.scenario(), source=f"quiz seed {self.seed}")

    def _recorded(self):
        """One run kept for the answers (a run is deterministic, and
        nothing here changes it)."""
        got = self.__dict__.get("_run")
        if got is None:
            got = self.run()
            sim, labelled = got
            object.__setattr__(self, "_run", got)
            object.__setattr__(self, "_answers", _answers(sim, labelled))
        return got

    def answers(self) -> Answers:
        """The model's answers (computed once per problem)."""
        self._recorded()
        return self.__dict__["_answers"]

    def text(self, answers: bool = False) -> str:
        """The problem as plain text (ASCII, at most 72 columns); with
        ``answers`` also the model's answers and reasoning."""
        ans = self.answers()
        mode = "strict" if self.config["strict"] else "lazy"
        head = [f"iommu-viz quiz, seed {self.seed}", ""]
        sim, _ = self._recorded()
        ttl = ("the driver sends TTL hints and the SMMU honours them"
               if sim.ttl_hints else "this era's driver sends no TTL hints")
        head += textwrap.wrap(
            f"An arm-smmu-v3 system, kernel {self.config['kernel']}, "
            f"{mode} mode, an SMMU with BBML{self.config['bbml']} that "
            f"behaves as the '{self.config['personality']}' personality, "
            f"4K granule; {ttl}. The scenario:", WIDTH)
        lines = head + ["", self.scenario(), ""]
        labels = self.labels
        span = labels[0] if len(labels) == 1 else f"{labels[0]}-{labels[-1]}"
        lines += textwrap.wrap(
            f"{span}: which outcomes does the architecture allow for each "
            "labelled access? Choose one or more of: "
            + ", ".join(OUTCOMES) + ".", WIDTH)
        lines += textwrap.wrap(
            "TLB: which of these cached translations has no invalidation "
            "removed when the scenario ends? (An SMMU may also evict any "
            "entry at any time; this asks what no command removed.)", WIDTH)
        for i, (_, words) in enumerate(ans.tlb.candidates):
            lines.append(f"  {chr(97 + i)}) {words}")
        if not answers:
            lines += ["", f"Answers: iommu-viz quiz --seed {self.seed} -c"]
            return "\n".join(lines)
        lines += ["", "Answers (computed by the model)", ""]
        for a in ans.accesses:
            lines.append(f"{a.label}: access 0x{a.iova:x}: "
                         + ", ".join(a.allowed))
            for r in a.reasons:
                lines += textwrap.wrap(r, WIDTH, initial_indent="  - ",
                                       subsequent_indent="    ")
            lines.append("")
        picked = [chr(97 + i) for i, (k, _) in enumerate(ans.tlb.candidates)
                  if k in ans.tlb.remaining]
        lines.append("TLB: " + (", ".join(picked) if picked else "none"))
        for i, r in enumerate(ans.tlb.reasons):
            lines += textwrap.wrap(f"{chr(97 + i)}) {r}", WIDTH,
                                   initial_indent="  ",
                                   subsequent_indent="     ")
        return "\n".join(lines)

    def __str__(self):
        return self.text()


def make_problem(seed) -> Problem:
    """The problem for ``seed`` (a whole number from 0 to 2**63-1)."""
    seed = check_seed(seed)
    config, ops = _generate(random.Random(seed))
    return Problem(seed, config, tuple(ops))


def build(seed):
    """``(Problem, Answers)`` for ``seed``."""
    p = make_problem(seed)
    return p, p.answers()
