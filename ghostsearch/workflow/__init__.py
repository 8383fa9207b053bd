"""The workflows the commands run, as calls: `run_search` (what `ghostsearch search` does)
and `run_confirm` (what `ghostsearch confirm` does), each returning what it found."""

from __future__ import annotations

from .confirm import ConfirmSettings, Verdict, run_confirm
from .search import SearchResult, run_search, search_settings

__all__ = ["ConfirmSettings", "SearchResult", "Verdict", "run_confirm", "run_search",
           "search_settings"]
