"""The quiz widget: its headless state (seed, choices, check, running
score) and the ipywidgets layout driven by button clicks."""

from __future__ import annotations

import pytest

from iommu_viz.quiz import OUTCOMES, make_problem
from iommu_viz.widgets.quiz import Quiz, QuizSession


def test_session_questions_are_the_models_answers():
    s = QuizSession(seed=82)
    ans = make_problem(82).answers()
    ids = [q.id for q in s.questions]
    assert ids == [a.label for a in ans.accesses] + ["TLB"]
    for a in ans.accesses:
        q = s.question(a.label)
        assert q.correct == frozenset(a.allowed)
        assert [v for v, _ in q.choices] == list(OUTCOMES)
        assert q.reasons == a.reasons
    tlb = s.question("TLB")
    assert len(tlb.choices) == len(ans.tlb.candidates)
    assert len(tlb.correct) == len(ans.tlb.remaining)


def test_score_counts_the_first_check_only():
    s = QuizSession(seed=1)
    assert s.score == (0, 0) and s.feedback("A1") == ""
    first, second = s.questions[0], s.questions[1]
    s.choose(first.id, first.correct)
    s.choose(second.id, set(OUTCOMES) - second.correct)
    res = s.check()
    assert res[first.id] is True and res[second.id] is False
    n = len(s.questions)
    right = sum(res.values())
    assert s.score == (right, n)
    assert "right" in s.feedback(first.id)
    assert "not quite" in s.feedback(second.id)
    assert s.feedback(first.id).count("  - ") == len(first.reasons)
    # fixing the answer and checking again shows it right, scores nothing
    s.choose(second.id, second.correct)
    assert s.check()[second.id] is True
    assert s.score == (right, n)
    s.new_problem()
    assert s.seed == 2 and s.results is None
    for q in s.questions:
        s.choose(q.id, q.correct)
    s.check()
    assert s.score == (right + len(s.questions), n + len(s.questions))
    assert s.problems == 2
    assert "over 2 problem(s)" in s.score_text()


def test_session_bad_input_leaves_state():
    s = QuizSession(seed=5)
    before = (s.seed, s.problem.text())
    with pytest.raises(ValueError, match="'abc'"):
        s.new_problem("abc")
    assert (s.seed, s.problem.text()) == before
    with pytest.raises(ValueError, match="'maybe' is not a choice of A1"):
        s.choose("A1", {"maybe"})
    with pytest.raises(KeyError, match="no question 'Q9'"):
        s.choose("Q9", set())
    s.new_problem(" 7 ")
    assert s.seed == 7


def test_widget_clicks():
    pytest.importorskip("ipywidgets")
    quiz = Quiz(seed=13)
    assert "config kernel=" in quiz.scenario.value
    q = quiz.session.questions[0]
    for (value, _), box in zip(q.choices, quiz._boxes[q.id]):
        box.value = value in q.correct
    quiz.check_button.click()
    assert quiz.session.results[q.id] is True
    assert "Score: " in quiz.score.value and "over 1 problem" in \
        quiz.score.value
    assert "The model:" in quiz.feedback.value
    quiz.seed_box.value = "not-a-seed"
    quiz.load_button.click()
    assert "not-a-seed" in quiz.message.value and quiz.session.seed == 13
    quiz.new_button.click()
    assert quiz.session.seed == 14 and quiz.seed_box.value == "14"
    assert quiz.message.value == "" and quiz.feedback.value == ""
    assert len(quiz.rows.children) == len(quiz.session.questions)


def test_exported_beside_the_other_widgets():
    import iommu_viz.widgets as w
    assert w.Quiz is Quiz and w.QuizSession is QuizSession
    assert {"Quiz", "QuizSession"} <= set(w.__all__)
