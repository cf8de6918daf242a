"""A notebook may not state an outcome the model does not allow.

Two mechanisms, both checked here:

* outcome claims in the markdown are tagged (``<!-- claim: ... -->``, see
  ``claims.py``) and re-run against the model: the allowed set (and the
  picked outcome, when stated) must match exactly;
* the predict-then-reveal questions take their answer from the model
  (``ask(..., answer=<expression>)``): the ``answer`` argument may not be a
  literal typed into the notebook, and ``ask`` itself refuses an answer
  that is not among the choices (tests/widgets/test_predict.py), so the
  notebook run fails when the model and the question disagree.
"""

import ast
import json
from pathlib import Path

import pytest

from claims import check, claims_in, parse

ROOT = Path(__file__).resolve().parents[2]
BOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ALL = [(b, i, body) for b in BOOKS for i, body in claims_in(b)]


@pytest.mark.parametrize("book,cell,body", ALL,
                         ids=[f"{b.stem}[{i}]" for b, i, _ in ALL])
def test_claim_holds_in_the_model(book, cell, body):
    assert check(parse(body)) == [], f"{book.name} cell {cell}: {body}"


@pytest.mark.parametrize("stem,least", [("02_splitting_a_block", 5),
                                        ("03_deferred_invalidation", 3),
                                        ("04_strict_vs_lazy", 4),
                                        ("05_the_2019_thread", 10),
                                        ("06_your_own_system", 2)])
def test_outcome_notebooks_tag_their_claims(stem, least):
    book = ROOT / "notebooks" / f"{stem}.ipynb"
    assert len(claims_in(book)) >= least


def test_a_wrong_claim_is_caught():
    wrong = parse("scenario=seed-conflict bbml=2 personality=adversarial "
                  "access=2 allowed=conflict,translated")
    assert "the model allows ['translated']" in check(wrong)[0]
    picked = parse("scenario=seed fast=True sync_after=False access=1 "
                   "allowed=fault,stale picked=fault")
    assert "picks 'stale'" in check(picked)[0]
    assert "no access 99" in check(parse("scenario=seed access=99 "
                                         "allowed=fault"))[0]


def test_malformed_claims_are_refused():
    with pytest.raises(ValueError, match="no allowed="):
        parse("scenario=seed access=1")
    with pytest.raises(ValueError, match="not among"):
        parse("scenario=seed access=1 allowed=stael")
    with pytest.raises(ValueError, match="not key=value"):
        parse("scenario=seed access=1 allowed=fault bbml")
    with pytest.raises(ValueError, match="unknown scenario option"):
        check(parse("scenario=seed bmml=1 access=1 allowed=fault"))


def _ask_calls(book):
    cells = json.loads(book.read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or "ask(" not in "".join(cell["source"]):
            continue
        tree = ast.parse("".join(cell["source"]))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ask":
                yield i, node


def _typed(node):
    """A literal (or a container of literals) typed into the notebook."""
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("book", BOOKS, ids=[b.stem for b in BOOKS])
def test_questions_take_their_answer_from_the_model(book):
    calls = list(_ask_calls(book))
    assert len(calls) >= 2, f"{book.name}: fewer than two predict questions"
    for i, call in calls:
        kw = {k.arg: k.value for k in call.keywords}
        assert "answer" in kw, f"{book.name} cell {i}: ask() without answer="
        assert not _typed(kw["answer"]), \
            f"{book.name} cell {i}: the answer is typed, not computed"


def test_the_literal_check_can_fail():
    assert _typed(ast.parse("'fault'", mode="eval").body)
    assert not _typed(ast.parse("run.accesses[1].allowed", mode="eval").body)
