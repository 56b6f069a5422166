"""Intermediate datasets deleted once read (``intermediates: discard``), and the record that says so.

A stage's ``data/`` is read by the next stage only, quality's ``scored/`` by its own cut and select: once
the last phase reading such a folder has completed (its :attr:`~winnow.pipeline.stages.Phase.frees`),
the runner deletes it and names it in the owning stage's ``stage.json`` (``"discarded": ["data"]``), so
that a run holds about two copies of the documents at a time instead of one per stage. What the funnel
needs stays: a discarded ``data/`` counts its rows from the ``stats.json`` written when its stage
completed. The record is cleared when the phase that writes the folder runs again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from winnow.pipeline.json_records import read_json, write_json


def discarded(stage_dir: Path) -> set[str]:
    """The dataset folders of a stage that were deleted after they were read."""
    try:
        return set(json.loads((stage_dir / "stage.json").read_text()).get("discarded") or [])
    except (OSError, ValueError):
        return set()


def is_discarded(folder: Path) -> bool:
    """Whether ``folder`` (``stages/<stage>/<dataset>``) was deleted after it was read."""
    return folder.name in discarded(folder.parent)


def discard(folder: Path) -> None:
    """Delete ``folder`` and record it in its stage's ``stage.json`` (the record first: a run killed between
    the two leaves a folder named discarded, never a half-deleted one taken for whole)."""
    state_path = folder.parent / "stage.json"
    state = read_json(state_path) or {}
    state["discarded"] = sorted({*(state.get("discarded") or []), folder.name})
    write_json(state_path, state)
    shutil.rmtree(folder, ignore_errors=True)
