"""Throughput of the per-image scorers on a batch of 256 64x64 images (not a test).

    python -m benchmarks.scorer_throughput          # writes benchmarks/results/scorer_throughput.json

Uses the trained mini-world models when installed, else tiny random stand-ins of the same
architecture family (recorded in the output as "backend"), so it runs offline on any machine.
Timings exclude the first (model-loading) call: they are steady-state images per second.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.results_io import RESULTS_DIR, machine, write_result

# The mini CLIP's real size (bench/miniworld/clip_model.py), with random weights.
STAND_IN_CLIP = {"embed_dim": 128, "quick_gelu": True,
                 "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 6, "head_width": 32},
                 "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4}}


def main() -> None:
    import open_clip
    import torch

    from bench.catalog import load_catalog
    from bench.core.errors import EraselabError
    from bench.offline import setup_ultralytics_offline
    from detectors import SCORERS

    n = 256
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]
    catalog = load_catalog("miniworld")
    concepts = [list(catalog.concepts.values())[i % len(catalog.concepts)] for i in range(n)]
    prompts = [c.prompts()[0] for c in concepts]

    tmp = Path(tempfile.mkdtemp())
    clip_opts: dict = {}
    try:
        from detectors.clip_backend import load_clip
        load_clip()
    except EraselabError:
        (tmp / "bench-clip.json").write_text(json.dumps(STAND_IN_CLIP))
        open_clip.add_model_config(tmp)
        clip_opts = {"clip_model": "bench-clip"}
    try:  # the shipped mini detector; else a random yolov8n with its classes (same cost per image)
        from detectors.yolo import mini_detector_path
        yolo_opts = {"weights": str(mini_detector_path()), "imgsz": 64}
    except EraselabError:
        setup_ultralytics_offline()
        from ultralytics import YOLO
        from ultralytics.nn.tasks import DetectionModel
        yolo = YOLO("yolov8n.yaml")
        yolo.model = DetectionModel("yolov8n.yaml", nc=len(catalog.concepts), verbose=False)
        yolo.model.names = dict(enumerate(catalog.concepts))
        yolo.save(str(tmp / "random-yolov8n.pt"))
        yolo_opts = {"weights": str(tmp / "random-yolov8n.pt"), "imgsz": 64}

    setups = {"clip-score": clip_opts, "clip-zero-shot": clip_opts, "mapping": clip_opts,
              "yolo": yolo_opts,
              "imagenet-classifier": {"model": "resnet10t", "pretrained": False}}
    results = {}
    for name, opts in setups.items():
        scorer = SCORERS.get(name)(device="cpu", **opts)
        scorer.score(images[:8], prompts[:8], concepts[:8])  # load models, warm caches
        start = time.perf_counter()
        scorer.score(images, prompts, concepts)
        seconds = time.perf_counter() - start
        results[name] = {"seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1),
                         "backend": scorer.backend}
        print(f"{name:22s} {seconds:6.2f} s  {n / seconds:7.1f} img/s  ({scorer.backend})")
    out = write_result({"n_images": n, "size": 64, "device": "cpu", "torch_threads": torch.get_num_threads(),
                        "cpu": machine(), "os_cpus": os.cpu_count(), "scorers": results},
                       RESULTS_DIR / "scorer_throughput.json")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
