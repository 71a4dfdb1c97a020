"""Object detection with ultralytics YOLO: ``miniworld-yolo`` (the shipped mini detector) and
``yolo`` (any YOLO weights by path, e.g. COCO-pretrained ``yolov8x.pt`` for real models).

Per image: every detected class label and its confidence (at or above ``threshold``), and
``detected`` = the concept's catalog label (``detector.label``, default its name) is among them.
``concept_score`` is the highest confidence of a box of that label, read down to ``SCORE_FLOOR``
(0 below it), so a report can move the threshold and see which verdicts depend on it.
The mini detector has the catalog's objects and instances as classes; a concept whose label the
detector does not know is an error when the catalog names this detector for it, else None.

Weights files, and how each is read without running code from it:
  ``NAME.safetensors`` + ``NAME.yaml``  eraselab's format (the shipped mini detector): the yaml
      holds the ultralytics architecture, class names and input size; the model is rebuilt from
      it and the tensors are read from safetensors. No unpickling at all.
  ``NAME.pt``  ultralytics' own checkpoint (a pickle), read in ultralytics' restricted mode
      (bench.offline: ``torch.load(weights_only=True)`` against an allow-list of its model
      classes): a file that names anything else is refused with one line before any of it runs.
Other suffixes (ONNX, TorchScript, ...) are refused. ``save_yolo_safetensors`` writes the first
format (bench/miniworld/train_detector.py exports the trained detector with it).

ultralytics is imported only after ``bench.offline.setup_ultralytics_offline()``, which keeps it
from touching the network (settings sync, font download, pip installs) and turns on its
restricted loading.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

from bench.core.errors import EraselabError, shorten
from bench.core.files import atomic_write, write_text
from detectors import SCORERS
from detectors.base import Scorer, concept_label

MINI_DETECTOR = "detector/model.safetensors"
MINI_DETECTOR_CONFIG = "detector/model.yaml"
CONFIG_FORMAT = "eraselab-yolo/1"
CONFIG_KEYS = {"format", "task", "imgsz", "names", "model"}
# The lowest box confidence kept for ``concept_score``: the threshold curves start here. A box's
# confidence does not depend on the threshold NMS ran under (the best box of a class always
# survives it), so ``detected`` is the same as with the threshold alone.
SCORE_FLOOR = 0.05


def config_path_of(weights) -> Path:
    """The yaml that describes a ``.safetensors`` detector: the same path, suffix ``.yaml``."""
    return Path(weights).with_suffix(".yaml")


@lru_cache(maxsize=4)
def load_yolo(weights: str, device: str = "cpu"):
    """A YOLO model from a weights file (see the module docstring), loaded once per process."""
    from bench.offline import setup_ultralytics_offline

    setup_ultralytics_offline()
    path = Path(weights)
    if path.is_dir():
        raise EraselabError(f"{weights}: is a folder, expected a YOLO weights file")
    if not path.is_file():
        raise EraselabError(f"{weights}: YOLO weights file not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _load_safetensors_yolo(path)
    if suffix != ".pt":
        raise EraselabError(f"{weights}: unsupported YOLO weights format {shorten(suffix)!r}; expected "
                            f"NAME.safetensors with NAME.yaml beside it, or an ultralytics .pt")
    import warnings

    from ultralytics import YOLO
    try:
        with warnings.catch_warnings():
            # torch's restricted unpickler warns about the protocol of a foreign pickle; the
            # refusal below is the message
            warnings.simplefilter("ignore")
            model = YOLO(str(path), task="detect")
    except Exception as exc:  # noqa: BLE001 - ultralytics raises many types for a bad file
        raise EraselabError(f"{weights}: not loadable YOLO weights ({_first_line(exc)}); "
                            f"nothing from the file was run") from None
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.replace("ERROR ❌️ ", "").split(" Use an official Ultralytics model")[0].strip()
    return shorten(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def read_detector_config(path: Path) -> dict:
    """The checked ``NAME.yaml`` of a safetensors detector; errors name the file and key."""
    from bench.core.yamlio import read_yaml_mapping

    config = read_yaml_mapping(path)

    def bad(key: str, expected: str):
        return EraselabError(f"{path}: key {key!r}: expected {expected}")

    unknown = sorted(str(k) for k in config if k not in CONFIG_KEYS)
    if unknown:
        raise EraselabError(f"{path}: unknown key {shorten(unknown[0])!r}; expected {sorted(CONFIG_KEYS)}")
    if config.get("format") != CONFIG_FORMAT:
        raise bad("format", repr(CONFIG_FORMAT))
    if config.get("task", "detect") != "detect":
        raise bad("task", "'detect'")
    imgsz = config.get("imgsz")
    if not isinstance(imgsz, int) or isinstance(imgsz, bool) or not 32 <= imgsz <= 4096 or imgsz % 32:
        raise bad("imgsz", "a multiple of 32 in 32..4096 (the input size the detector was trained at)")
    names = config.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise bad("names", "a non-empty list of class names")
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("backbone"), list) \
            or not isinstance(model.get("head"), list):
        raise bad("model", "an ultralytics model mapping with 'backbone' and 'head' lists")
    if model.get("nc", len(names)) != len(names):
        raise bad("model.nc", f"the number of names ({len(names)})")
    return config


def _load_safetensors_yolo(path: Path):
    """Rebuild the detector from its yaml, then fill in the safetensors tensors."""
    import torch
    from safetensors.torch import load_file
    from ultralytics import YOLO
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel

    config_path = config_path_of(path)
    if not config_path.is_file():
        raise EraselabError(f"{path}: its model description {config_path.name} is missing beside it")
    config = read_detector_config(config_path)
    names = config["names"]
    cfg = copy.deepcopy(config["model"])
    cfg["nc"] = len(names)
    try:
        with torch.random.fork_rng(devices=[]):  # the builder's weight init must not move global RNG
            model = DetectionModel(cfg=cfg, ch=int(cfg.get("channels", 3)), nc=len(names), verbose=False)
    except Exception as exc:  # noqa: BLE001 - a bad layer list fails in many ways inside ultralytics
        raise EraselabError(f"{config_path}: key 'model': not a buildable ultralytics detection "
                            f"model ({_first_line(exc)})") from None
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise EraselabError(f"{path}: unreadable safetensors file ({_first_line(exc)})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        which = f"lacks {missing[0]!r}" if missing else f"has an unknown tensor {shorten(unexpected[0])!r}"
        raise EraselabError(f"{path}: does not match {config_path.name} ({which}; "
                            f"{len(missing)} missing, {len(unexpected)} unexpected)")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise EraselabError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                f"{config_path.name} builds {tuple(own[name].shape)}")
    model.load_state_dict(state, strict=True)
    model = model.float().eval()
    model.names = dict(enumerate(names))
    model.task = "detect"
    model.args = {**DEFAULT_CFG_DICT, "imgsz": config["imgsz"], "task": "detect"}
    model.pt_path = str(path)
    # A YOLO wrapper around the rebuilt network: built from ultralytics' own packaged yaml (no file
    # of ours is involved), then given our model and the overrides a .pt would have carried.
    with torch.random.fork_rng(devices=[]):
        yolo = YOLO("yolov8n.yaml", task="detect")
    yolo.model = model
    yolo.overrides = {"imgsz": config["imgsz"], "task": "detect"}
    yolo.model_name = str(path)
    return yolo


def save_yolo_safetensors(model, path, imgsz: int) -> list[Path]:
    """Write an ultralytics DetectionModel as ``path`` (.safetensors) + its ``.yaml``; returns both.

    Tensors keep their dtype (ultralytics checkpoints hold float16; loading casts to float32
    exactly as ultralytics' own loader does). Both files are written to temp names and renamed."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: expected a .safetensors path")
    names = model.names
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    arch = {k: v for k, v in copy.deepcopy(model.yaml).items() if k not in ("yaml_file",)}
    arch["nc"] = len(names)
    config = {"format": CONFIG_FORMAT, "task": "detect", "imgsz": int(imgsz), "names": names,
              "model": arch}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    config_path = config_path_of(path)
    # pid in the temp names: two processes exporting to one cache path never share a temp file;
    # the config lands first, so a reader that sees the weights also sees their yaml
    write_text(config_path, _config_text(config))
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": CONFIG_FORMAT}))
    return [path, config_path]


def _config_text(config: dict) -> str:
    """The yaml text of a detector config, one layer per line as ultralytics' own yamls are."""
    import json

    import yaml

    arch = dict(config["model"])
    layers = {part: arch.pop(part) for part in ("backbone", "head")}
    head = dict(config, model=arch)
    text = yaml.safe_dump(head, sort_keys=False, default_flow_style=None, width=4096)
    for part, rows in layers.items():  # JSON rows are YAML flow sequences
        text += f"  {part}:\n" + "".join(f"  - {json.dumps(row)}\n" for row in rows)
    return text


def mini_detector_path(root: str | None = None) -> Path:
    """The shipped detector's weights, after checking them and their yaml against SHA256SUMS."""
    from bench.miniworld.weights import verified_path
    from bench.core.paths import MINIWORLD_DIR
    base = Path(root) if root else MINIWORLD_DIR
    verified_path(MINI_DETECTOR_CONFIG, base)
    return verified_path(MINI_DETECTOR, base)


@SCORERS.register("yolo")
class YoloDetector(Scorer):
    """YOLO object detector: detected labels, confidences, and whether the concept's label is there."""

    name = "yolo"
    version = "2"
    columns = ("detected", "concept_score", "det_labels", "det_confidences")

    def __init__(self, device: str | None = "cpu", batch_size: int = 64, weights: str | None = None,
                 threshold: float = 0.25, imgsz: int | None = None, miniworld_root: str | None = None):
        super().__init__(device, batch_size)
        self.weights, self.threshold, self.imgsz = weights, float(threshold), imgsz
        self.miniworld_root = miniworld_root

    def _weights_path(self) -> str:
        if self.weights is None:
            raise EraselabError(f"scorer {self.name!r} needs weights=PATH (NAME.safetensors with "
                                f"NAME.yaml beside it, or an ultralytics .pt)")
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
        kwargs = {"conf": min(self.threshold, SCORE_FLOOR), "verbose": False, "device": self.device}
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
            kept = [(l, c) for l, c in zip(labels, confs) if c >= self.threshold]
            rows.append({"detected": (concept_conf >= self.threshold) if target is not None else None,
                         "concept_score": concept_conf if target is not None else None,
                         "det_labels": [l for l, _ in kept], "det_confidences": [c for _, c in kept]})
        return rows


@SCORERS.register("miniworld-yolo")
class MiniWorldYolo(YoloDetector):
    """The mini world's YOLO detector (datasets/miniworld/v1/detector/model.safetensors + model.yaml)."""

    name = "miniworld-yolo"
    def _weights_path(self) -> str:
        return str(self.weights) if self.weights else str(mini_detector_path(self.miniworld_root))

    @property
    def backend(self) -> str:
        return Path(self.weights).name if self.weights else "miniworld-v1/detector/model.safetensors"
