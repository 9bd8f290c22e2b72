"""The resumable studies' cell cache: one JSON file per (model, rate, seed, ...) cell under runs/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def cached_cell(path: Path, compute: bool, run: Callable[[], dict], describe: Callable[[dict], str]) -> dict | None:
    """The cell stored at `path`; else, when `compute`, run it, store it and print `describe(cell)`."""
    if path.is_file():
        return json.loads(path.read_text())
    if not compute:
        return None
    cell = run()
    path.write_text(json.dumps(cell, indent=1))
    print(describe(cell), flush=True)
    return cell
