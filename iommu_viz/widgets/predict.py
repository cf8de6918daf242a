"""Predict, then reveal: a question the learner answers before the cell
that shows the answer.

:func:`ask` makes a :class:`Question` from a prompt, the choices and the
answer. The answer is meant to be **computed by the model** in the
notebook (an access's ``allowed`` set, a return value, a count), never
typed, so a question cannot drift from the model: if the model's answer is
not among the choices, :func:`ask` raises instead of showing a question
nobody can get right.

A Question is a plain object first (``respond``, ``reveal``, ``str``), so
tests drive it without a browser; in Jupyter it shows itself as a small
ipywidgets form: the choices (or a text box for a short value), *Check*,
which says right or wrong, and *Reveal*, which shows the answer and the
explanation.

Example::

    >>> from iommu_viz import scenarios
    >>> run = scenarios.run("seed", fast=True, sync_after=False)
    >>> q = ask("Right after iommu_unmap_fast returns, what may a read "
    ...         "of the unmapped page give?",
    ...         choices=outcome_choices(["translated", "stale", "fault"]),
    ...         answer=outcome_set(run.accesses[1].allowed))
    >>> q.respond("fault").correct
    False
    >>> q.respond("fault or stale").correct
    True
    >>> q.reveal()
    'fault or stale'

Nothing here models kernel behaviour; it only formats and compares.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from itertools import combinations

__all__ = ["Question", "Verdict", "ask", "outcome_set", "outcome_choices"]

#: The order outcomes are named in everywhere (best to worst).
OUTCOME_ORDER = ("translated", "stale", "conflict", "fault")


def _outcome_key(name):
    try:
        return (OUTCOME_ORDER.index(name), name)
    except ValueError:
        return (len(OUTCOME_ORDER), name)


def outcome_set(outcomes) -> str:
    """The canonical words for a set of outcomes (an access's ``allowed``
    set), alphabetical, joined by ``or``: ``{'stale', 'fault'}`` ->
    ``'fault or stale'``. One outcome is just its name."""
    names = sorted(set(outcomes))
    if not names:
        raise ValueError("an access always has at least one allowed "
                         "outcome; got an empty set")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"outcome {n!r} is not a name such as 'stale'")
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def outcome_choices(outcomes, max_size=None) -> list[str]:
    """Every non-empty combination of ``outcomes`` as :func:`outcome_set`
    words, singletons first: the choices for an "allowed outcomes"
    question. ``max_size`` limits how many outcomes a choice combines."""
    names = sorted(set(outcomes), key=_outcome_key)
    if not names:
        raise ValueError("outcome_choices needs at least one outcome")
    top = len(names) if max_size is None else max_size
    out = []
    for k in range(1, top + 1):
        for combo in combinations(names, k):
            out.append(outcome_set(combo))
    return out


def _norm(value) -> str:
    """Text of a value as compared: ints in hex (``0x...``), strings
    stripped and lower-cased, one space between words."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return hex(value)
    return " ".join(str(value).strip().lower().split())


def _parse_short(text):
    """A short typed answer: an int in any Python base, else the text."""
    t = text.strip().replace("_", "")
    try:
        return int(t, 0)
    except ValueError:
        return text


@dataclass(frozen=True)
class Verdict:
    """What :meth:`Question.respond` says about one answer."""

    response: str
    correct: bool
    text: str


class Question:
    """One predict-then-reveal question.

    ``choices`` is a list of strings (a multiple-choice question) or None
    (a short value: the learner types it; ints compare by value, so
    ``4096``, ``0x1000`` and ``0x1_000`` are the same answer). ``answer``
    is the model's answer, one of the choices when there are choices.
    ``explain`` is shown with the answer on reveal.
    """

    def __init__(self, prompt: str, answer, choices=None, explain: str = ""):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("a question needs a prompt (a non-empty string)")
        if choices is not None:
            choices = [str(c) for c in choices]
            if len(choices) < 2:
                raise ValueError(f"choices {choices!r}: a multiple-choice "
                                 "question needs at least two")
            if len(set(map(_norm, choices))) != len(choices):
                raise ValueError(f"choices {choices!r} repeat one another")
            if _norm(answer) not in map(_norm, choices):
                raise ValueError(
                    f"the model's answer {answer!r} is not among the choices "
                    f"{choices!r}; the question would have no right choice")
        elif answer is None or (isinstance(answer, str) and not answer.strip()):
            raise ValueError("a short-value question needs an answer")
        self.prompt = prompt
        self.choices = choices
        self._answer = answer
        self.explain = explain
        self.responses: list[Verdict] = []
        self.revealed = False
        self._view = None

    # ------------------------------------------------------------ headless
    def respond(self, response) -> Verdict:
        """Check an answer: a choice's text (or its index), or a typed
        value. Records it and returns a :class:`Verdict`."""
        if self.choices is not None:
            if isinstance(response, int) and not isinstance(response, bool):
                if not 0 <= response < len(self.choices):
                    raise ValueError(f"choice {response} is not one of "
                                     f"0..{len(self.choices) - 1}")
                response = self.choices[response]
            if _norm(response) not in map(_norm, self.choices):
                raise ValueError(f"{response!r} is not one of the choices "
                                 f"{self.choices!r}")
            given = response
        else:
            given = _parse_short(response) if isinstance(response, str) \
                else response
        ok = _norm(given) == _norm(self._answer)
        text = ("Right." if ok else "Not what the model says; look again, "
                "or reveal the answer.")
        v = Verdict(str(response), ok, text)
        self.responses.append(v)
        return v

    def reveal(self) -> str:
        """The model's answer, as text; marks the question revealed."""
        self.revealed = True
        a = self._answer
        return hex(a) if isinstance(a, int) and not isinstance(a, bool) \
            else str(a)

    @property
    def answer(self):
        """The model's answer (reading it counts as revealing)."""
        self.revealed = True
        return self._answer

    def __str__(self):
        lines = ["Predict: " + self.prompt]
        if self.choices is not None:
            lines += [f"  ({chr(97 + i)}) {c}" for i, c in
                      enumerate(self.choices)]
        else:
            lines.append("  (type a short value)")
        return "\n".join(lines)

    def __repr__(self):
        return (f"Question({self.prompt!r}, "
                f"{len(self.choices) if self.choices else 'short'} choices)")

    # ------------------------------------------------------------ widget
    def widget(self):
        """The ipywidgets form (built once): choices or a text box, Check,
        Reveal, and a line for the verdict and the answer."""
        if self._view is not None:
            return self._view
        import ipywidgets as w

        head = w.HTML(f"<b>Predict:</b> {html.escape(self.prompt)}")
        if self.choices is not None:
            entry = w.RadioButtons(options=self.choices, value=None,
                                   layout=w.Layout(width="auto"))
        else:
            entry = w.Text(placeholder="your answer",
                           layout=w.Layout(width="16em"))
        check = w.Button(description="Check", button_style="info",
                         layout=w.Layout(width="7em"))
        show = w.Button(description="Reveal", layout=w.Layout(width="7em"))
        out = w.HTML("")

        def on_check(_):
            if entry.value in (None, ""):
                out.value = "<i>Choose or type an answer first.</i>"
                return
            try:
                v = self.respond(entry.value)
            except ValueError as err:
                out.value = f"<i>{html.escape(str(err))}</i>"
                return
            mark = "&#10003;" if v.correct else "&#10007;"
            out.value = f"{mark} {html.escape(v.text)}"

        def on_reveal(_):
            txt = html.escape(self.reveal())
            more = f" {html.escape(self.explain)}" if self.explain else ""
            out.value = f"<b>Model's answer:</b> <code>{txt}</code>.{more}"

        check.on_click(on_check)
        show.on_click(on_reveal)
        self._view = w.VBox([head, entry, w.HBox([check, show]), out],
                            layout=w.Layout(border="1px solid #bbb",
                                            padding="4px 8px",
                                            margin="4px 0"))
        self._view.add_class("iommu-viz-predict")
        self._parts = dict(entry=entry, check=check, reveal=show, out=out)
        return self._view

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget())


def ask(prompt: str, choices=None, answer=None, explain: str = "") -> Question:
    """A :class:`Question`; shown as a widget when it is a cell's value.

    ``answer`` must be computed by the model in the notebook; with
    ``choices`` it must be one of them (else ValueError, naming both)."""
    return Question(prompt, answer, choices=choices, explain=explain)
