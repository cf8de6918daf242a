"""The seeded exercises (:mod:`iommu_viz.quiz`) as a notebook widget with a
running score.

:class:`QuizSession` holds the state and is driven without ipywidgets
(tests use it directly): the seed, the problem, the learner's choices,
which questions were right at the first check, and the score.
:class:`Quiz` lays it out: a seed box, a "New problem" button, the
scenario, one row of choices per question, a "Check" button, the
model's answers with its reasoning once checked, and the score.

Example::

    >>> s = QuizSession(seed=3)
    >>> q = s.questions[0]
    >>> s.choose(q.id, q.correct)
    >>> s.check()[q.id]
    True
    >>> s.score[0] >= 1
    True
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..quiz import OUTCOMES, check_seed, make_problem

__all__ = ["Question", "QuizSession", "Quiz"]


@dataclass(frozen=True)
class Question:
    """One question: ``choices`` are ``(value, words)`` pairs; ``correct``
    the frozenset of values the model says; ``reasons`` its reasoning."""

    id: str
    prompt: str
    choices: tuple
    correct: frozenset
    reasons: tuple


class QuizSession:
    """The quiz's state, without widgets.

    ``score`` is ``(questions right at their first check, questions
    checked)`` over every problem of the session; checking a problem
    again shows the answers but does not count twice.
    """

    def __init__(self, seed=0):
        self.right = 0
        self.asked = 0
        self.problems = 0
        self.load(seed)

    def load(self, seed) -> None:
        """Show the problem of ``seed``; raises ValueError for a seed that
        is not a whole number from 0 to 2**63-1 (state unchanged)."""
        seed = check_seed(seed)
        problem = make_problem(seed)
        answers = problem.answers()
        questions = []
        for a in answers.accesses:
            op = next(o for o in problem.ops if o.get("label") == a.label)
            questions.append(Question(
                a.label, f"{a.label}: access 0x{op['iova']:x}",
                tuple((o, o) for o in OUTCOMES), frozenset(a.allowed),
                a.reasons))
        tlb = answers.tlb
        questions.append(Question(
            "TLB", "TLB: which cached translations has no invalidation removed at the end?",
            tuple((chr(97 + i), f"{chr(97 + i)}) {words}")
                  for i, (_, words) in enumerate(tlb.candidates)),
            frozenset(chr(97 + i) for i, (k, _) in enumerate(tlb.candidates)
                      if k in tlb.remaining),
            tlb.reasons))
        self.seed = seed
        self.problem = problem
        self.answers = answers
        self.questions = tuple(questions)
        self.choices = {q.id: frozenset() for q in questions}
        self.results = None

    def new_problem(self, seed=None) -> None:
        """The next seed's problem, or ``seed``'s."""
        self.load(self.seed + 1 if seed is None else seed)

    def question(self, qid) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise KeyError(f"no question {qid!r}; the questions are "
                       + ", ".join(q.id for q in self.questions))

    def choose(self, qid, values) -> None:
        """Set the learner's choices for question ``qid``."""
        q = self.question(qid)
        values = frozenset(values)
        known = {v for v, _ in q.choices}
        bad = sorted(values - known)
        if bad:
            raise ValueError(f"{bad[0]!r} is not a choice of {qid}; choose "
                             "from " + ", ".join(sorted(known)))
        self.choices[qid] = values

    def check(self) -> dict:
        """``{question id: right?}``; the first check of a problem adds
        to the score."""
        results = {q.id: self.choices[q.id] == q.correct
                   for q in self.questions}
        if self.results is None:
            self.right += sum(results.values())
            self.asked += len(results)
            self.problems += 1
        self.results = results
        return results

    @property
    def score(self) -> tuple:
        return (self.right, self.asked)

    def score_text(self) -> str:
        return (f"Score: {self.right} of {self.asked} questions right at "
                f"the first check, over {self.problems} problem(s).")

    def feedback(self, qid) -> str:
        """The model's answer to ``qid`` and its reasoning (plain text);
        empty until checked."""
        if self.results is None:
            return ""
        q = self.question(qid)
        mark = "right" if self.results[qid] else "not quite"
        answer = ", ".join(v for v, _ in q.choices if v in q.correct) \
            or "none"
        return "\n".join([f"{qid}: {mark}. The model: {answer}."]
                         + [f"  - {r}" for r in q.reasons])


class Quiz:
    """The notebook widget over a :class:`QuizSession`; ``display`` it
    (or evaluate it as a cell's last line)."""

    def __init__(self, seed=0):
        import ipywidgets as w
        self.session = QuizSession(seed)
        self._w = w
        self.seed_box = w.Text(value=str(self.session.seed),
                               description="seed",
                               layout=w.Layout(width="14em"))
        self.new_button = w.Button(description="New problem")
        self.load_button = w.Button(description="Load seed")
        self.check_button = w.Button(description="Check",
                                     button_style="primary")
        self.message = w.HTML()
        self.scenario = w.HTML()
        self.rows = w.VBox()
        self.feedback = w.HTML()
        self.score = w.HTML(self.session.score_text())
        self.new_button.on_click(lambda _b: self._new(None))
        self.load_button.on_click(lambda _b: self._new(self.seed_box.value))
        self.check_button.on_click(lambda _b: self._check())
        self.widget = w.VBox([
            w.HBox([self.seed_box, self.load_button, self.new_button]),
            self.message, self.scenario, self.rows,
            w.HBox([self.check_button, self.score]), self.feedback])
        self._boxes = {}
        self._render()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    def _render(self):
        w = self._w
        s = self.session
        self.seed_box.value = str(s.seed)
        self.scenario.value = ("<pre style='line-height:1.25'>"
                               + html.escape(s.problem.text()) + "</pre>")
        rows = []
        self._boxes = {}
        for q in s.questions:
            boxes = [w.Checkbox(value=False, description=words, indent=False,
                                layout=w.Layout(width="auto"))
                     for _v, words in q.choices]
            self._boxes[q.id] = boxes
            layout = w.HBox if q.id != "TLB" else w.VBox
            rows.append(w.VBox([w.HTML(f"<b>{html.escape(q.prompt)}</b>"),
                                layout(boxes)]))
        self.rows.children = rows
        self.feedback.value = ""
        self.score.value = html.escape(s.score_text())

    def _new(self, seed):
        try:
            self.session.new_problem(seed)
        except ValueError as e:
            self.message.value = f"<span>{html.escape(str(e))}</span>"
            return
        self.message.value = ""
        self._render()

    def _check(self):
        s = self.session
        for q in s.questions:
            chosen = [v for (v, _), box in zip(q.choices, self._boxes[q.id])
                      if box.value]
            s.choose(q.id, chosen)
        s.check()
        parts = [html.escape(s.feedback(q.id)) for q in s.questions]
        self.feedback.value = ("<pre style='white-space:pre-wrap'>"
                               + "\n\n".join(parts) + "</pre>")
        self.score.value = html.escape(s.score_text())
