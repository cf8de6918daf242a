"""ipywidgets explorers for the notebooks: toggles -> scenario -> run ->
views. See :class:`Explorer`; its state without widgets is
:class:`ExplorerSession`."""

from .compare import RunDiff, compare_runs, match_step
from .explorer import TOGGLE_NAMES, UNMAP_CHOICES, Explorer
from .outcome import access_summary, access_words, explain_access, outcome_text
from .session import ExplorerSession, Score
from .toggles import TOGGLES

__all__ = ["Explorer", "ExplorerSession", "Score", "TOGGLES", "TOGGLE_NAMES",
           "UNMAP_CHOICES", "explain_access", "access_words",
           "access_summary", "outcome_text", "compare_runs", "match_step",
           "RunDiff"]
from .show import events_table, find_step, show_figure, show_tree

__all__ += ["show_tree", "show_figure", "find_step", "events_table"]
from .quiz import Quiz, QuizSession

__all__ += ["Quiz", "QuizSession"]
