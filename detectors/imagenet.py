"""``imagenet-classifier``: the paper's detection protocol for real models.

An image shows the concept when the top-1 class of a timm ImageNet classifier equals the
concept's ``imagenet_id`` (the authors used ``eva02_large_patch14_448.mim_m38m_ft_in22k_in1k``).
Weights load with timm's own code: ``pretrained=True`` fetches the hub weights (a networked
machine, once; then the Hugging Face cache), ``checkpoint_path=FILE`` loads a local file, and
tests build a tiny model (``test_vit``) with ``pretrained=False``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from bench.core.errors import EraselabError, shorten
from detectors import SCORERS
from detectors.base import Scorer

PAPER_MODEL = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"


@lru_cache(maxsize=2)
def load_timm(model: str = PAPER_MODEL, pretrained: bool = True, checkpoint_path: str | None = None,
              device: str = "cpu"):
    """(model, transform) for a timm ImageNet classifier, loaded once per process."""
    import timm
    from timm.data import create_transform, resolve_data_config

    if checkpoint_path and not Path(checkpoint_path).is_file():
        raise EraselabError(f"{checkpoint_path}: ImageNet classifier checkpoint not found")
    try:
        net = timm.create_model(model, pretrained=pretrained and not checkpoint_path, num_classes=1000,
                                checkpoint_path=checkpoint_path or "")
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise EraselabError(f"timm has no model {model!r}") from None
        if checkpoint_path:
            raise _checkpoint_error(checkpoint_path, exc) from None
        raise
    except OSError as exc:  # weights not cached and no network
        raise EraselabError(f"could not load timm weights for {model!r} ({str(exc).splitlines()[0]}); "
                            f"fetch them once on a networked machine or pass checkpoint_path") from None
    except Exception as exc:  # noqa: BLE001 - a refused pickle, a corrupt or mismatched checkpoint
        if not checkpoint_path:
            raise
        raise _checkpoint_error(checkpoint_path, exc) from None
    net.eval().to(device)
    transform = create_transform(**resolve_data_config({}, model=net))
    return net, transform


def _checkpoint_error(path: str, exc: BaseException) -> EraselabError:
    """One line for a checkpoint timm could not read; a pickle naming code is refused by torch's
    restricted unpickler (timm loads with weights_only=True), so nothing from it ran."""
    import pickle
    text = f"{exc} {exc.__cause__ or ''}".lower()
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text and "global" in text:
        why = "a pickle that names code outside plain tensors: refused, nothing from it was run"
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        why = f"{type(exc).__name__}: {shorten(first)}"
    return EraselabError(f"{path}: not loadable ImageNet classifier weights ({why})")


@SCORERS.register("imagenet-classifier")
class ImageNetClassifier(Scorer):
    """ImageNet top-1 (timm) equals the concept's imagenet_id: the paper's detection rate."""

    name = "imagenet-classifier"
    version = "2"
    columns = ("detected", "imagenet_top1", "imagenet_top1_p", "concept_score")
    threshold = None  # the top-1 class decides, not a probability

    def __init__(self, device: str | None = "cpu", batch_size: int = 32, model: str = PAPER_MODEL,
                 pretrained: bool = True, checkpoint_path: str | None = None):
        super().__init__(device, batch_size)
        self.model_name, self.pretrained, self.checkpoint_path = model, pretrained, checkpoint_path

    @property
    def backend(self) -> str:
        if self.checkpoint_path:
            return f"{self.model_name}@{Path(self.checkpoint_path).name}"
        return self.model_name if self.pretrained else f"{self.model_name}/random"

    def _score(self, images, prompts, concepts):
        import torch

        net, transform = load_timm(self.model_name, bool(self.pretrained),
                                   str(self.checkpoint_path) if self.checkpoint_path else None, self.device)
        with torch.inference_mode():
            x = torch.stack([transform(im) for im in images]).to(self.device)
            probs = net(x).float().softmax(-1).cpu()
        top_p, top = probs.max(-1)
        rows = []
        for i, concept in enumerate(concepts):
            target = None
            if concept is not None:
                target = concept.imagenet_id
                if target is None and (concept.detector or {}).get("name") == self.name:
                    raise EraselabError(f"concept {concept.name!r}: the catalog names {self.name!r} as "
                                        f"its detector but gives no imagenet_id")
            rows.append({"detected": (int(top[i]) == target) if target is not None else None,
                         "imagenet_top1": int(top[i]), "imagenet_top1_p": float(top_p[i]),
                         "concept_score": float(probs[i, target]) if target is not None else None})
        return rows
