"""``--smoke``: tiny random stand-ins for every heavy component, so a whole suite runs in seconds.

The model under test becomes ``bench.tiny.tiny_pipeline()``; CLIP scorers use a tiny open_clip
config with seeded random weights; ``imagenet-classifier`` uses timm's ``test_vit``; YOLO scorers a
YOLOv8n-config model (the mini world's classes) built once into the eraselab cache; the style probe is fitted on the
tiny CLIP's features of solid-colour images; the CNN judge has seeded random weights. These are the builders tests/test_scorers.py uses.
Prompts, samples, seeds and steps shrink (``smoke_suite``), and methods run a few steps
(each method's ``quick_overrides``, as tests/test_methods.py uses them). Numbers from a smoke run mean nothing;
it checks that the path runs.

    eraselab run paper-sd14 --smoke --out /tmp/smoke
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

SMOKE_MODEL = "eraselab-tiny:seed=0"
SMOKE_CLIP = "eraselab-smoke-clip"
SMOKE_CLIP_CONFIG = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

# Methods run with their own ``quick_overrides`` (methods/*.py: tiny step counts) and, where they
# take few-shot images, two of the seeded noise stand-ins.
SMOKE_SHOTS = 2
# 1 prompt x 2 samples per set (KID needs 2 a side), at most 4 concepts (distinct types first)
SMOKE_PROMPTS, SMOKE_SAMPLES, SMOKE_STEPS, SMOKE_CONCEPTS = 1, 2, 2, 4


def smoke_suite(suite):
    """The suite shrunk: 1 prompt x 2 samples per set, <= 4 concepts, one seed, 2 sampling steps."""
    from bench.runner.suite import ModelSpec
    sets = {k: dataclasses.replace(v, prompts=min(v.prompts, SMOKE_PROMPTS),
                                   samples=min(v.samples, SMOKE_SAMPLES))
            for k, v in suite.prompt_sets.items()}
    sampler = {**suite.sampler, "steps": SMOKE_STEPS, "resolution": None,
               "batch_size": min(suite.sampler["batch_size"], 8)}
    by_type: dict = {}
    for c in suite.concepts:
        by_type.setdefault(suite.catalog[c].type, []).append(c)
    concepts = [c for c in dict.fromkeys([v[0] for v in by_type.values()] + list(suite.concepts))]
    keep = set(concepts[:SMOKE_CONCEPTS])
    resurgence = suite.resurgence
    if resurgence is not None:  # a 3-checkpoint ladder of tiny chains, drift at the smoke steps
        resurgence = dataclasses.replace(
            resurgence, steps=tuple(range(min(len(resurgence.steps), 3))), images=min(resurgence.images, 4),
            prompt_sets={k: dataclasses.replace(v, prompts=min(v.prompts, SMOKE_PROMPTS),
                                                samples=min(v.samples, SMOKE_SAMPLES))
                         for k, v in resurgence.prompt_sets.items()},
            drift=tuple((label, {**s, **({"steps": SMOKE_STEPS} if "steps" in s else {})})
                        for label, s in resurgence.drift))
    return dataclasses.replace(suite, concepts=tuple(c for c in suite.concepts if c in keep),
                               models=tuple(ModelSpec(m.id, SMOKE_MODEL) for m in suite.models),
                               prompt_sets=sets, sampler=sampler, seeds=suite.seeds[:1],
                               smoke_sized=True, resurgence=resurgence)


def method_overrides(method: str, config_fields) -> dict:
    """The smoke run's overrides of ``method``: its ``quick_overrides``, and ``k`` (few-shot
    images) at SMOKE_SHOTS when its config has one."""
    from methods import METHODS
    out = dict(METHODS.get(method).quick_overrides)
    if "k" in config_fields:
        out["k"] = SMOKE_SHOTS
    return {k: v for k, v in out.items() if k in config_fields}


def fewshot_images(concept, k: int, seed: int = 0, size: int = 16) -> list:
    """``k`` seeded random-noise stand-ins for a concept's few-shot images (``erase``'s
    ``fewshot_source``; the stand-ins do not depend on the erasure seed)."""
    import numpy as np
    from PIL import Image
    from bench.core.ids import image_seed
    rng = np.random.default_rng(image_seed(f"smoke-fewshot:{concept.name}", 0))
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(k)]


@lru_cache(maxsize=1)
def register_clip() -> str:
    """Register the tiny CLIP config and load it once with seeded weights (cached by load_clip)."""
    import open_clip
    import torch
    from detectors.clip_backend import load_clip
    folder = Path(tempfile.mkdtemp(prefix="eraselab-smoke-clip-"))
    (folder / f"{SMOKE_CLIP}.json").write_text(json.dumps(SMOKE_CLIP_CONFIG))
    open_clip.add_model_config(folder)
    # random init draws from the global RNG: seed it (forked) so every process gets the same CLIP
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        load_clip(SMOKE_CLIP, None, "cpu", None)
    return SMOKE_CLIP


@lru_cache(maxsize=1)
def yolo_weights() -> str:
    """A random YOLOv8n model with the mini world's classes, saved once under the eraselab cache (shared by processes)."""
    from bench.catalog import load_catalog
    from bench.offline import cache_dir, setup_ultralytics_offline
    from bench.core.ids import content_id
    # every non-style mini-world concept is a class, as in the shipped detector
    names = [c.name for c in load_catalog("miniworld").concepts.values() if not c.is_style]
    classes = dict(enumerate(names))
    path = cache_dir() / "smoke" / f"yolo-tiny-{content_id(names)}.safetensors"
    if path.is_file():
        return str(path)
    setup_ultralytics_offline()
    import torch
    from ultralytics.nn.tasks import DetectionModel
    from detectors.yolo import save_yolo_safetensors
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DetectionModel("yolov8n.yaml", nc=len(classes), verbose=False)
        model.names = classes
        save_yolo_safetensors(model, path, imgsz=64)  # safetensors + yaml: nothing to unpickle
    return str(path)


@lru_cache(maxsize=1)
def style_probe_dir() -> str:
    """A probe fitted on the tiny CLIP's features of solid-colour images, one per style."""
    from PIL import Image
    from bench.catalog import load_catalog
    from detectors.clip_backend import load_clip
    from detectors.style_probe import fit_style_probe
    register_clip()
    styles = [c.name for c in load_catalog("miniworld").of_type("style")] + ["plain"]
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (128, 128, 128)]
    images, labels = [], []
    for style, colour in zip(styles, colours):
        for shade in (1.0, 0.8, 0.6):
            images.append(Image.new("RGB", (64, 64), tuple(int(c * shade) for c in colour)))
            labels.append(style)
    feats = load_clip(SMOKE_CLIP, None, "cpu", None).encode_images(images).numpy()
    folder = Path(tempfile.mkdtemp(prefix="eraselab-smoke-probe-"))
    fit_style_probe(feats, labels, threshold=0.0).save(folder)
    return str(folder)


@lru_cache(maxsize=1)
def judge_dir() -> str:
    """A CNN judge with seeded random weights and the mini world's classes."""
    import torch
    from bench.catalog import load_catalog
    from detectors.cnn_judge import build_judge, save_judge, style_classes
    catalog = load_catalog("miniworld")
    objects = [c.name for c in catalog.concepts.values() if not c.is_style]
    styles = style_classes([c.name for c in catalog.of_type("style")])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_judge(objects, styles, widths=(8, 8))
    folder = Path(tempfile.mkdtemp(prefix="eraselab-smoke-judge-"))
    save_judge(net.eval(), folder, objects, styles, widths=(8, 8))
    return str(folder)


@lru_cache(maxsize=1)
def preload_timm() -> None:
    import torch
    from detectors.imagenet import load_timm
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        load_timm("test_vit", False, None, "cpu")


def scorer_options(name: str, cls) -> dict:
    """Constructor arguments that point scorer ``name`` at its tiny stand-in."""
    params = set(inspect.signature(cls.__init__).parameters)
    out: dict = {}
    if "clip_model" in params:
        out.update(clip_model=register_clip(), clip_pretrained=None, clip_root=None)
    if name == "imagenet-classifier":
        preload_timm()
        out.update(model="test_vit", pretrained=False, checkpoint_path=None)
    if "weights" in params and "yolo" in name:
        out.update(weights=yolo_weights(), imgsz=64)
    if "probe_dir" in params:
        out.update(probe_dir=style_probe_dir())
    if "judge_dir" in params:
        out.update(judge_dir=judge_dir())
    if "subsets" in params:
        out.update(subsets=10)
    return out


def smoke_env() -> None:
    """No network in smoke runs, and one torch thread: the tensors are tiny, and on a shared
    machine a second thread spins waiting for a busy core (measured: 5x slower under load)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging
    import torch
    torch.set_num_threads(1)
    # open_clip warns on the root logger that the tiny CLIP has random weights: that is the point
    logging.getLogger().setLevel(logging.ERROR)
