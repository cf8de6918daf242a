"""Helpers for the renderer tests."""


def first_step(run, kind, actor=None, **detail):
    """The first step whose event matches."""
    for ev in run.events:
        if ev.kind == kind and (actor is None or ev.actor == actor) and all(
                ev.detail.get(k) == v for k, v in detail.items()):
            return ev.step
    raise AssertionError(f"no {kind} event with {detail}")


def check_plain(text, width=72):
    """Every line ASCII and at most ``width`` columns."""
    for line in text.split("\n"):
        assert len(line) <= width, f"{len(line)} columns: {line!r}"
        assert line.isascii(), f"non-ASCII: {line!r}"
