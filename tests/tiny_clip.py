"""A tiny open_clip model for scorer tests: registered from a config, random weights, seeded.

    from tests.tiny_clip import register_tiny_clip
    name = register_tiny_clip(tmp_path, "my-test-clip", CONFIG)   # then open_clip knows `name`
"""

from __future__ import annotations

import json
from pathlib import Path


def register_tiny_clip(folder: Path, name: str, config: dict) -> str:
    import open_clip
    import torch

    (Path(folder) / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)  # the weights each test builds from it are the same every run
    return name
