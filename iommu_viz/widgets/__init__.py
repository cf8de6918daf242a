"""ipywidgets explorers for the notebooks: toggles -> scenario -> run ->
views. See :class:`Explorer`."""

from .explorer import TOGGLE_NAMES, UNMAP_CHOICES, Explorer
from .outcome import access_summary, access_words, explain_access, outcome_text

__all__ = ["Explorer", "TOGGLE_NAMES", "UNMAP_CHOICES", "explain_access",
           "access_words", "access_summary", "outcome_text"]
