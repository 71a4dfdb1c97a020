"""Where eraselab's data lives: the repository's datasets/ folder and the shipped mini world.

The package is installed editable (``pip install -e .``), so data is found next to the code;
``ERASELAB_DATA`` overrides the datasets folder for installs elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS_DIR = Path(os.environ.get("ERASELAB_DATA", REPO_ROOT / "datasets"))
CATALOG_DIR = DATASETS_DIR / "catalogs"
SUITE_DIR = DATASETS_DIR / "suites"
MINIWORLD_VERSION = "v1"
MINIWORLD_DIR = DATASETS_DIR / "miniworld" / MINIWORLD_VERSION
