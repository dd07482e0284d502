"""Accuracy-budgeted precision search: keep only the layers that need it in float (issue 13).

``PrecisionSearch`` carries the budget (``--max-accuracy-drop`` / ``--min-sqnr``), the time limit and where to
save the resulting preset; ``edgeexport.search.precision.search_item`` runs the search for one planned artifact
and ``edgeexport.search.recipe`` writes the result as a preset TOML. Nothing here imports a framework at import
time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class PrecisionSearch:
    """The budget a quantized artifact must meet, and how long the search for it may take.

    ``max_accuracy_drop`` is in accuracy points (0-100) on labelled verification data; ``min_sqnr_db`` is the
    worst output's SQNR in dB against the reference (no labels needed). At least one is set. ``timeout_s`` is
    wall time in seconds (default 600); ``save_preset`` a TOML file to write the chosen recipe to (None: not
    saved, though the report still lists it).
    """

    max_accuracy_drop: float | None = None
    min_sqnr_db: float | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    save_preset: Path | None = None

    def describe(self) -> str:
        """The budget in words, e.g. ``"accuracy drop <= 1 pts"``."""
        parts = []
        if self.max_accuracy_drop is not None:
            parts.append(f"accuracy drop <= {self.max_accuracy_drop:g} pts")
        if self.min_sqnr_db is not None:
            parts.append(f"SQNR >= {self.min_sqnr_db:g} dB")
        return " and ".join(parts)


__all__ = ["DEFAULT_TIMEOUT_S", "PrecisionSearch"]
