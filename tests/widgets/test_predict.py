"""The predict-then-reveal question: headless checks of answers, the
refusal of a question whose model answer is not a choice, and the widget's
buttons driven without a browser."""

import pytest

from iommu_viz import scenarios
from iommu_viz.widgets.predict import (Question, ask, outcome_choices,
                                       outcome_set)


def test_outcome_set_words_are_canonical():
    assert outcome_set({"stale", "fault"}) == "fault or stale"
    assert outcome_set(frozenset({"fault"})) == "fault"
    assert outcome_set(["translated", "stale", "conflict"]) == \
        "conflict, stale or translated"
    with pytest.raises(ValueError, match="at least one"):
        outcome_set(set())


def test_outcome_choices_cover_every_combination_once():
    ch = outcome_choices(["translated", "stale", "conflict", "fault"])
    assert len(ch) == 15 and len(set(ch)) == 15
    assert ch[:4] == ["translated", "stale", "conflict", "fault"]
    assert outcome_choices(["stale", "fault"], max_size=1) == ["stale", "fault"]


def test_choice_question_checks_answers_against_the_model():
    run = scenarios.run("seed", fast=True, sync_after=False)
    q = ask("read of the unmapped page?",
            choices=outcome_choices(["translated", "stale", "fault"]),
            answer=outcome_set(run.accesses[1].allowed))
    assert not q.respond("stale").correct
    assert q.respond("fault or stale").correct
    assert q.respond(q.choices.index("fault or stale")).correct
    assert not q.revealed
    assert q.reveal() == "fault or stale" and q.revealed
    assert [v.correct for v in q.responses] == [False, True, True]


def test_answer_not_among_the_choices_is_refused():
    with pytest.raises(ValueError, match="not among the choices"):
        ask("?", choices=["stale", "fault"], answer="conflict")
    with pytest.raises(ValueError, match="at least two"):
        ask("?", choices=["stale"], answer="stale")
    with pytest.raises(ValueError, match="repeat"):
        ask("?", choices=["stale", "Stale "], answer="stale")
    with pytest.raises(ValueError, match="prompt"):
        ask("  ", choices=["a", "b"], answer="a")
    with pytest.raises(ValueError, match="needs an answer"):
        ask("how many?", answer=None)


def test_response_outside_the_choices_is_an_error_not_a_verdict():
    q = ask("?", choices=["stale", "fault"], answer="fault")
    with pytest.raises(ValueError, match="not one of the choices"):
        q.respond("conflict")
    with pytest.raises(ValueError, match="0..1"):
        q.respond(5)
    assert q.responses == []


def test_short_value_compares_numbers_by_value():
    q = ask("bytes unmapped?", answer=4096)
    assert q.respond("0x1000").correct
    assert q.respond("4096").correct
    assert q.respond(" 0x1_000 ").correct
    assert not q.respond("0").correct
    assert q.reveal() == "0x1000"
    t = ask("which function?", answer="iommu_iotlb_sync")
    assert t.respond("  IOMMU_iotlb_sync ").correct
    assert not t.respond("iommu_unmap").correct


def test_plain_text_does_not_give_the_answer_away():
    q = ask("which?", choices=["stale", "fault"], answer="fault",
            explain="the sync completed")
    s = str(q)
    assert s.splitlines() == ["Predict: which?", "  (a) stale", "  (b) fault"]
    assert "sync completed" not in s


def test_widget_buttons_check_and_reveal():
    pytest.importorskip("ipywidgets")
    q = ask("which?", choices=["stale", "fault"], answer="fault",
            explain="the sync completed")
    view = q.widget()
    assert q.widget() is view
    p = q._parts
    p["check"].click()
    assert "first" in p["out"].value and q.responses == []
    p["entry"].value = "stale"
    p["check"].click()
    assert "&#10007;" in p["out"].value and not q.revealed
    p["entry"].value = "fault"
    p["check"].click()
    assert "&#10003;" in p["out"].value
    p["reveal"].click()
    assert "fault" in p["out"].value and "sync completed" in p["out"].value
    assert q.revealed


def test_short_widget_has_a_text_box():
    pytest.importorskip("ipywidgets")
    q = Question("how many?", 3)
    q.widget()
    q._parts["entry"].value = "3"
    q._parts["check"].click()
    assert "&#10003;" in q._parts["out"].value
