"""Object detection with ultralytics YOLO: ``miniworld-yolo`` (the shipped mini detector) and
``yolo`` (any YOLO weights by path, e.g. COCO-pretrained ``yolov8x.pt`` for real models).

Per image: every detected class label and its confidence (at or above ``threshold``), and
``detected`` = the concept's catalog label (``detector.label``, default its name) is among them.
The mini detector has the catalog's objects and instances as classes; a concept whose label the
detector does not know is an error when the catalog names this detector for it, else None.

ultralytics is imported only after ``bench.offline.setup_ultralytics_offline()``, which keeps it
from touching the network (settings sync, font download, pip installs).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from bench.core.errors import EraselabError
from detectors import SCORERS
from detectors.base import Scorer, concept_label

MINI_DETECTOR = "detector/best.pt"


@lru_cache(maxsize=4)
def load_yolo(weights: str, device: str = "cpu"):
    """A YOLO model from a weights file, loaded once per process."""
    from bench.offline import setup_ultralytics_offline

    setup_ultralytics_offline()
    from ultralytics import YOLO

    if not Path(weights).is_file():
        raise EraselabError(f"{weights}: YOLO weights file not found")
    try:
        model = YOLO(str(weights), task="detect")
    except Exception as exc:  # noqa: BLE001 - ultralytics raises many types for a bad file
        raise EraselabError(f"{weights}: not loadable YOLO weights ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return model


def mini_detector_path(root: str | None = None) -> Path:
    from bench.miniworld.weights import verified_path
    from bench.core.paths import MINIWORLD_DIR
    return verified_path(MINI_DETECTOR, Path(root) if root else MINIWORLD_DIR)


@SCORERS.register("yolo")
class YoloDetector(Scorer):
    """YOLO object detector: detected labels, confidences, and whether the concept's label is there."""

    name = "yolo"
    version = "1"
    columns = ("detected", "det_labels", "det_confidences", "det_concept_conf")

    def __init__(self, device: str | None = "cpu", batch_size: int = 64, weights: str | None = None,
                 threshold: float = 0.25, imgsz: int | None = None, miniworld_root: str | None = None):
        super().__init__(device, batch_size)
        self.weights, self.threshold, self.imgsz = weights, float(threshold), imgsz
        self.miniworld_root = miniworld_root

    def _weights_path(self) -> str:
        if self.weights is None:
            raise EraselabError(f"scorer {self.name!r} needs weights=PATH (a YOLO .pt file)")
        return str(self.weights)

    @property
    def model(self):
        return load_yolo(self._weights_path(), self.device)

    @property
    def backend(self) -> str:
        return Path(self.weights).name if self.weights else ""

    @property
    def class_names(self) -> list[str]:
        names = self.model.names
        return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)

    def _target(self, concept) -> str | None:
        if concept is None:
            return None
        label = concept_label(concept, self.name)
        if label is not None:
            if label not in self.class_names:
                raise EraselabError(f"concept {concept.name!r}: detector {self.name!r} has no class "
                                    f"{label!r}; its classes: {', '.join(self.class_names)}")
            return label
        label = (concept.detector or {}).get("label") or concept.name
        return label if label in self.class_names else None

    def _score(self, images, prompts, concepts):
        kwargs = {"conf": self.threshold, "verbose": False, "device": self.device}
        if self.imgsz is not None:
            kwargs["imgsz"] = self.imgsz  # else the size the weights were trained at
        from bench.offline import keep_torch_threads
        with keep_torch_threads():
            results = self.model.predict(list(images), **kwargs)
        names = self.model.names
        rows = []
        for result, concept in zip(results, concepts):
            classes = result.boxes.cls.int().tolist()
            confs = [round(float(c), 4) for c in result.boxes.conf.tolist()]
            labels = [names[c] for c in classes]
            target = self._target(concept)
            concept_conf = max((c for l, c in zip(labels, confs) if l == target), default=0.0)
            rows.append({"detected": (concept_conf >= self.threshold) if target is not None else None,
                         "det_labels": labels, "det_confidences": confs,
                         "det_concept_conf": concept_conf if target is not None else None})
        return rows


@SCORERS.register("miniworld-yolo")
class MiniWorldYolo(YoloDetector):
    """The mini world's YOLO detector (datasets/miniworld/v1/detector/best.pt)."""

    name = "miniworld-yolo"
    def _weights_path(self) -> str:
        return str(self.weights) if self.weights else str(mini_detector_path(self.miniworld_root))

    @property
    def backend(self) -> str:
        return Path(self.weights).name if self.weights else "miniworld-v1/detector/best.pt"
