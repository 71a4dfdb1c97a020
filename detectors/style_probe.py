"""The style probe: logistic regression on evaluation-CLIP image features (``miniworld-style-probe``).

Fit with ``fit_style_probe(features, labels)`` (scikit-learn ``LogisticRegression``); the fitted
probe is stored WITHOUT pickle, as ``probe.safetensors`` (coefficients, intercepts, the feature
mean and scale) + ``probe.json`` (classes, threshold, the CLIP it was fitted on):

    probe = fit_style_probe(features, labels)      # features: (N, D) CLIP image embeddings
    probe.save("datasets/miniworld/v1/probe")      # and StyleProbe.load(folder)
    probe.predict(features)                        # [("van gogh", 0.93), ("nothing", 0.41), ...]

"Nothing recognisable" is an outcome, not a forced choice: a top probability under ``threshold``
reads ``"nothing"``, and so do the classes in ``nothing_classes`` ("plain", "nothing"), so a
noise image never counts as Van Gogh. For real models styles are judged by ``clip-zero-shot``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.core.errors import EraselabError
from bench.labels import NOTHING, PLAIN
from detectors import SCORERS
from detectors.base import concept_label, read_description, read_safetensors
from detectors.clip_score import ClipBackedScorer

FORMAT = "eraselab-style-probe/1"
WEIGHTS_FILE, META_FILE = "probe.safetensors", "probe.json"


@dataclass
class StyleProbe:
    classes: list[str]
    coef: np.ndarray         # (K, D), or (1, D) for two classes (scikit-learn's binary layout)
    intercept: np.ndarray    # (K,) or (1,)
    mean: np.ndarray         # (D,) feature mean, subtracted before the linear layer
    scale: np.ndarray        # (D,) feature std, divided after
    threshold: float = 0.5
    nothing_classes: tuple[str, ...] = (PLAIN, NOTHING)
    meta: dict = field(default_factory=dict)  # e.g. {"clip": "miniworld-clip", "accuracy": 0.97}

    def predict_proba(self, features) -> np.ndarray:
        x = (_l2(np.asarray(features, dtype=np.float64)) - self.mean) / self.scale
        z = x @ self.coef.T.astype(np.float64) + self.intercept.astype(np.float64)
        if self.coef.shape[0] == 1:  # binary: one logit for classes[1]
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, features) -> list[tuple[str, float]]:
        """(label, probability) per row; ``"nothing"`` when unsure or a no-style class wins."""
        out = []
        for row in self.predict_proba(features):
            k = int(row.argmax())
            label = self.classes[k]
            if row[k] < self.threshold or label in self.nothing_classes:
                label = NOTHING
            out.append((label, float(row[k])))
        return out

    def save(self, folder: str | Path) -> list[Path]:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"coef": self.coef, "intercept": self.intercept, "mean": self.mean, "scale": self.scale}
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
                  str(folder / WEIGHTS_FILE))
        meta = {"format": FORMAT, "classes": list(self.classes), "threshold": self.threshold,
                "nothing_classes": list(self.nothing_classes), "meta": self.meta}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return [folder / WEIGHTS_FILE, folder / META_FILE]

    @classmethod
    def load(cls, folder: str | Path) -> "StyleProbe":
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta = read_description(folder, WEIGHTS_FILE, META_FILE, FORMAT, "style probe")
        t = read_safetensors(folder / WEIGHTS_FILE, load_file)
        probe = cls(classes=list(meta["classes"]), coef=t["coef"], intercept=t["intercept"],
                    mean=t["mean"], scale=t["scale"], threshold=float(meta["threshold"]),
                    nothing_classes=tuple(meta.get("nothing_classes", ())), meta=meta.get("meta", {}))
        rows = 1 if len(probe.classes) == 2 else len(probe.classes)
        if probe.coef.shape[0] != rows or probe.intercept.shape[0] != rows:
            raise EraselabError(f"{folder}: {len(probe.classes)} classes but coefficients of shape "
                                f"{tuple(probe.coef.shape)}")
        return probe


def _l2(x: np.ndarray) -> np.ndarray:
    # CLIP features are compared by angle; normalising makes the probe blind to feature norm.
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def fit_style_probe(features, labels: list[str], C: float = 1.0, threshold: float = 0.5,
                    nothing_classes: tuple[str, ...] = (PLAIN, NOTHING), max_iter: int = 2000,
                    meta: dict | None = None) -> StyleProbe:
    """Fit a multinomial logistic regression on L2-normalised, standardised features."""
    from sklearn.linear_model import LogisticRegression

    x = _l2(np.asarray(features, dtype=np.float64))
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)  # constant features: leave them, don't divide by 0
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=0)
    clf.fit((x - mean) / scale, np.asarray(labels))
    return StyleProbe(classes=[str(c) for c in clf.classes_], coef=clf.coef_.copy(),
                      intercept=clf.intercept_.copy(), mean=mean, scale=scale, threshold=threshold,
                      nothing_classes=tuple(nothing_classes), meta=dict(meta or {}))


@SCORERS.register("miniworld-style-probe")
class StyleProbeScorer(ClipBackedScorer):
    """Style probe on CLIP image features; "nothing" when no style is recognisable."""

    name = "miniworld-style-probe"
    version = "2"
    columns = ("detected", "concept_score", "style_pred", "style_p")

    def __init__(self, device: str | None = "cpu", batch_size: int = 64, probe_dir: str | None = None,
                 clip_model: str = "miniworld-clip", clip_pretrained: str | None = None,
                 clip_root: str | None = None):
        super().__init__(device, batch_size, clip_model, clip_pretrained, clip_root)
        self.probe_dir = probe_dir

    @property
    def probe(self) -> StyleProbe:
        if self.probe_dir is not None:
            return _load_probe(str(self.probe_dir))
        from bench.miniworld.weights import verified_path
        from bench.core.paths import MINIWORLD_DIR
        root = Path(self.clip_root) if self.clip_root else MINIWORLD_DIR
        verified_path(f"probe/{WEIGHTS_FILE}", root)
        return _load_probe(str(verified_path(f"probe/{META_FILE}", root).parent))

    @property
    def backend(self) -> str:
        return f"{super().backend}+probe"

    @property
    def threshold(self) -> float:
        return float(self.probe.threshold)

    def _score(self, images, prompts, concepts):
        probe = self.probe
        features = self.clip.encode_images(images).numpy()
        predictions, probs = probe.predict(features), probe.predict_proba(features)
        rows = []
        for (label, p), row, concept in zip(predictions, probs, concepts):
            target = None
            if concept is not None and concept.is_style:
                target = concept_label(concept, self.name) or concept.name
            score = float(row[probe.classes.index(target)]) if target in probe.classes else None
            rows.append({"detected": (label == target) if target is not None else None,
                         "concept_score": score if target is not None else None,
                         "style_pred": label, "style_p": p})
        return rows


@lru_cache(maxsize=4)
def _load_probe(folder: str) -> StyleProbe:
    return StyleProbe.load(folder)  # once per process, like the other models
