"""ipywidgets explorers for the notebooks: toggles -> scenario -> run ->
views. See :class:`Explorer`."""

from .explorer import TOGGLE_NAMES, UNMAP_CHOICES, Explorer
from .outcome import access_summary, access_words, explain_access, outcome_text

__all__ = ["Explorer", "TOGGLE_NAMES", "UNMAP_CHOICES", "explain_access",
           "access_words", "access_summary", "outcome_text"]
from .show import events_table, find_step, show_figure, show_tree

__all__ += ["show_tree", "show_figure", "find_step", "events_table"]
from .quiz import Quiz, QuizSession

__all__ += ["Quiz", "QuizSession"]
