"""The mini world's second, independent judge: a small CNN classifier (``miniworld-cnn-judge``).

It shares nothing with the judges it checks: not the mini YOLO's detector architecture or scenes,
not the style probe's CLIP features. It sees pixels only, and it is trained on renders passed
through the mini SD's VAE and on faint, blurred and partly covered renders
(bench/miniworld/train_judge.py), because those are what a generator that half-erased a concept
draws. Two heads on one trunk:

* objects: one sigmoid per catalog object or instance (a scene may hold several; no class above
  the threshold = nothing recognisable);
* styles: a softmax over ``plain`` and the catalog styles.

``concept_score`` is the probability the judge gives the image's concept (its object's sigmoid or
its style's softmax share); ``detected`` = ``concept_score >= threshold``.

Stored without pickle: ``judge.safetensors`` (the weights) + ``judge.json`` (format, classes,
styles, trunk widths, threshold, what it was trained on):

    net = build_judge(objects, styles)           # and save_judge(net, folder, meta) / load_judge(folder)
    JudgeScorer().score(images, prompts, concepts)
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.core.errors import EraselabError
from bench.labels import PLAIN
from detectors import SCORERS
from detectors.base import Scorer, concept_label, read_description, read_safetensors

FORMAT = "eraselab-cnn-judge/1"
WEIGHTS_FILE, META_FILE = "judge.safetensors", "judge.json"
MINI_JUDGE_DIR = "judge"
WIDTHS = (24, 48, 64, 96, 128)
THRESHOLD = 0.5


def build_judge(objects, styles, widths=WIDTHS):
    """The network: conv blocks that each halve the image (64 -> 2 pixels), global average
    pooling, an object head and a style head. Returns a torch module whose forward gives
    (object logits (N, len(objects)), style logits (N, len(styles)))."""
    from torch import nn

    class JudgeNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c_in = [], 3
            for c_out in widths:
                layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                           nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                           nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
                c_in = c_out
            self.trunk = nn.Sequential(*layers)
            self.objects = nn.Linear(c_in, len(objects))
            self.styles = nn.Linear(c_in, len(styles))

        def forward(self, x):
            h = self.trunk(x).mean(dim=(2, 3))
            return self.objects(h), self.styles(h)

    return JudgeNet()


def to_judge_input(images_uint8: np.ndarray):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def save_judge(net, folder, objects, styles, meta: dict | None = None, threshold: float = THRESHOLD,
               widths=WIDTHS) -> list[Path]:
    from bench.core.files import write_text
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # the description lands first, so a reader that sees the weights also sees their classes
    write_text(folder / META_FILE, json.dumps({
        "format": FORMAT, "objects": list(objects), "styles": list(styles), "widths": list(widths),
        "threshold": float(threshold), "meta": dict(meta or {})}, indent=2) + "\n")
    state = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    save_file(state, str(folder / WEIGHTS_FILE))
    return [folder / WEIGHTS_FILE, folder / META_FILE]


@lru_cache(maxsize=4)
def load_judge(folder: str):
    """(network in eval mode, its description) from a judge folder; once per process."""
    from safetensors.torch import load_file

    path = Path(folder)
    meta = read_description(path, WEIGHTS_FILE, META_FILE, FORMAT, "judge")
    for key in ("objects", "styles", "widths"):
        if not isinstance(meta.get(key), list) or not meta[key]:
            raise EraselabError(f"{path / META_FILE}: key {key!r}: expected a non-empty list")
    net = build_judge(meta["objects"], meta["styles"], tuple(meta["widths"]))
    state = read_safetensors(path / WEIGHTS_FILE, load_file)
    own = net.state_dict()
    wanted = {k for k in own if not k.endswith("num_batches_tracked")}
    if set(state) != wanted or any(tuple(state[k].shape) != tuple(own[k].shape) for k in wanted):
        raise EraselabError(f"{path / WEIGHTS_FILE}: does not match {META_FILE} (the tensors' names or "
                            f"shapes differ from the network it describes)")
    net.load_state_dict(state, strict=False)
    return net.eval(), meta


def judge_probabilities(net, images_uint8: np.ndarray, batch: int = 256):
    """(object sigmoids (N, K), style softmax (N, S)) as numpy arrays."""
    import torch
    obj, sty = [], []
    with torch.inference_mode():
        for start in range(0, len(images_uint8), batch):
            o, s = net(to_judge_input(images_uint8[start:start + batch]))
            obj.append(o.sigmoid().numpy())
            sty.append(s.softmax(dim=-1).numpy())
    if not obj:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return np.concatenate(obj), np.concatenate(sty)


@SCORERS.register("miniworld-cnn-judge")
class JudgeScorer(Scorer):
    """Independent CNN judge of the mini world: objects by sigmoid, styles by softmax."""

    name = "miniworld-cnn-judge"
    version = "1"
    columns = ("detected", "concept_score", "cnn_objects", "cnn_style")

    def __init__(self, device: str | None = "cpu", batch_size: int = 256, judge_dir: str | None = None,
                 threshold: float | None = None, miniworld_root: str | None = None):
        super().__init__(device, batch_size)
        self.judge_dir, self.miniworld_root = judge_dir, miniworld_root
        self._threshold = threshold

    def _folder(self) -> str:
        if self.judge_dir is not None:
            return str(self.judge_dir)
        from bench.core.paths import MINIWORLD_DIR
        from bench.miniworld.weights import verified_path
        root = Path(self.miniworld_root) if self.miniworld_root else MINIWORLD_DIR
        verified_path(f"{MINI_JUDGE_DIR}/{META_FILE}", root)
        return str(verified_path(f"{MINI_JUDGE_DIR}/{WEIGHTS_FILE}", root).parent)

    @property
    def model(self):
        return load_judge(self._folder())

    @property
    def threshold(self) -> float:
        return float(self._threshold if self._threshold is not None else self.model[1]["threshold"])

    @property
    def backend(self) -> str:
        if not self.judge_dir:
            return f"miniworld-v1/{MINI_JUDGE_DIR}"
        # named by its weights, not its folder: the same judge anywhere is the same backend
        from bench.miniworld.weights import sha256_of
        return f"judge-{sha256_of(Path(self.judge_dir) / WEIGHTS_FILE)[:12]}"

    def _score(self, images, prompts, concepts):
        net, meta = self.model
        objects, styles = meta["objects"], meta["styles"]
        p_obj, p_sty = judge_probabilities(net, np.stack([np.asarray(im) for im in images]), self.batch_size)
        rows = []
        for i, concept in enumerate(concepts):
            score = None
            if concept is not None:
                label = concept_label(concept, self.name) or concept.name
                names, probs = (styles, p_sty[i]) if concept.is_style else (objects, p_obj[i])
                if label in names:
                    score = float(probs[names.index(label)])
                elif concept_label(concept, self.name) is not None:
                    raise EraselabError(f"concept {concept.name!r}: judge {self.name!r} has no class "
                                        f"{label!r}; its classes: {', '.join(names)}")
            seen = [n for n, p in zip(objects, p_obj[i]) if p >= self.threshold]
            rows.append({"detected": (score >= self.threshold) if score is not None else None,
                         "concept_score": score, "cnn_objects": seen,
                         "cnn_style": styles[int(p_sty[i].argmax())]})
        return rows


def style_classes(catalog_styles) -> list[str]:
    """The style head's classes: no style first, then the styles."""
    return [PLAIN, *catalog_styles]
