"""Where and how the benchmark scripts record their results (benchmarks/results/*.json).

    from benchmarks.results_io import RESULTS_DIR, machine, model_label, write_result
    write_result({"benchmark": "erase_speed", ...}, RESULTS_DIR / "erase_speed.json")
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = RESULTS_DIR.parents[1]


def machine() -> str:
    return platform.processor() or platform.machine()


def model_label(model) -> str:
    """A model path as the result file records it: relative to the repository when inside it, so
    that results do not carry one machine's home folder; anything else (a hub id) unchanged."""
    path = Path(str(model)).resolve()
    if not path.exists():
        return str(model)
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(model)


def write_result(report: dict, out) -> Path:
    """Write ``report`` as indented JSON (the folder is created); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out
