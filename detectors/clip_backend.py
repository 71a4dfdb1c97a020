"""The evaluation CLIP behind clip-score, clip-zero-shot, mapping, the style probe and kid-clip.

Backends, chosen by ``(model, pretrained)``:

* ``("miniworld-clip", None)`` (default): the mini world's CLIP, shipped as
  ``datasets/miniworld/v1/clip/open_clip_config.json`` + ``model.safetensors`` and checked
  against SHA256SUMS; the config is registered with ``open_clip.add_model_config``.
* any open_clip name and pretrained tag or local file, e.g. ``("ViT-L-14", "openai")`` as in the
  paper, loaded with ``open_clip.create_model_and_transforms(name, pretrained=tag_or_path)``
  (a tag downloads once on a networked machine; a file path never touches the network).
* ``(name, None)`` for a name other than miniworld-clip: random weights (tests only).

``load_clip`` is cached per (model, pretrained, device, root): one copy per process. The wrapped
``ClipBackend`` gives unit-norm image/text embeddings in batches, and ``ClipFeatures`` is the
``nn.Module`` that kid-clip hands to torchmetrics as its feature extractor.
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

from bench.core.errors import EraselabError

MINI_CLIP = "miniworld-clip"
MINI_CONFIG = "clip/open_clip_config.json"
MINI_WEIGHTS = "clip/model.safetensors"


def _register_mini_config(config_path: Path) -> str:
    """Register the shipped config under its model name; returns that name."""
    import open_clip

    config = json.loads(Path(config_path).read_text())
    name = config.pop("model_name", MINI_CLIP)
    config = config.get("model_cfg", config)  # also accept the hub layout {"model_cfg", "preprocess_cfg"}
    # add_model_config registers files by their stem, so write it as <name>.json in a scratch folder.
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.json").write_text(json.dumps(config))
        open_clip.add_model_config(tmp)
    return name


@lru_cache(maxsize=8)
def load_clip(model: str = MINI_CLIP, pretrained: str | None = None, device: str = "cpu",
              root: str | None = None) -> "ClipBackend":
    """The evaluation CLIP, loaded once per process; ``root`` overrides the mini-world folder."""
    import open_clip

    if model == MINI_CLIP and pretrained is None:
        from bench.miniworld.weights import verified_path
        from bench.core.paths import MINIWORLD_DIR

        base = Path(root) if root else MINIWORLD_DIR
        config_path = verified_path(MINI_CONFIG, base)
        weights = verified_path(MINI_WEIGHTS, base)
        name = _register_mini_config(config_path)
        pretrained_arg, label = str(weights), MINI_CLIP
    else:
        name, pretrained_arg = model, pretrained
        label = f"{model}/{pretrained}" if pretrained else f"{model}/random"
        if pretrained and Path(pretrained).is_dir():
            raise EraselabError(f"{pretrained}: is a folder; --clip-pretrained takes a tag or a weights file")
        if pretrained and ("/" in pretrained or "\\" in pretrained) and not Path(pretrained).is_file():
            raise EraselabError(f"{pretrained}: CLIP weights file not found")
    local_file = pretrained_arg is not None and Path(pretrained_arg).is_file()
    try:
        # weights_only=True (open_clip's default, stated here so it cannot drift): a torch file
        # is read by torch's restricted unpickler, which refuses anything but tensors and
        # containers; a .safetensors file is not unpickled at all
        clip, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained_arg,
                                                                    device=device, weights_only=True)
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "not found" in str(exc):
            raise EraselabError(f"open_clip has no model {name!r} with pretrained {pretrained_arg!r}: "
                                f"{_first_line(exc)}") from None
        if local_file:
            raise _refused(pretrained_arg, exc) from None
        raise
    except OSError as exc:  # hub download refused offline, unreadable file
        raise EraselabError(f"could not load CLIP {label}: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a refused pickle, a corrupt or mismatched file
        if local_file:
            raise _refused(pretrained_arg, exc) from None
        raise
    clip.eval()
    tokenizer = open_clip.get_tokenizer(name)
    return ClipBackend(clip, preprocess, tokenizer, device, label)


def _first_line(exc: BaseException) -> str:
    from bench.core.errors import shorten
    text = str(exc).strip()
    return shorten(text.splitlines()[0]) if text else type(exc).__name__


def _refused(path: str, exc: BaseException) -> EraselabError:
    import pickle
    if isinstance(exc, pickle.UnpicklingError) and "global" in str(exc).lower():
        why = ("a pickle that names code outside plain tensors: refused, nothing from it was run; "
               "eraselab reads .safetensors or tensor-only torch files")
    elif isinstance(exc, pickle.UnpicklingError):
        why = "not a tensor-only torch file or a safetensors file"
    else:
        why = f"{type(exc).__name__}: {_first_line(exc)}"
    return EraselabError(f"{path}: not loadable CLIP weights ({why})")


class ClipBackend:
    """A loaded CLIP: unit-norm ``encode_images(pil_list)`` and ``encode_texts(strings)``."""

    def __init__(self, model, preprocess, tokenizer, device: str, label: str):
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.device, self.label = device, label
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = getattr(model.visual, "image_size", None) or cfg.get("size", 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self._text_cache: dict[tuple[str, ...], "object"] = {}

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1]) if hasattr(self.model, "text_projection") \
            and self.model.text_projection is not None else int(self.encode_texts(["x"]).shape[-1])

    def image_tensor(self, images: list):
        """PIL images -> the normalised (N, 3, H, W) batch the image tower expects."""
        import numpy as np
        import torch

        if all(im.size == self.image_size[::-1] for im in images):
            # Fast path (the mini world: 64x64 in, 64x64 model): the open_clip transform would
            # resize to the same size; skipping it is identical and ~10x faster on CPU.
            x = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            mean = torch.tensor(self.mean).view(1, 3, 1, 1)
            std = torch.tensor(self.std).view(1, 3, 1, 1)
            return (x - mean) / std
        return torch.stack([self.preprocess(im) for im in images])

    def encode_image_tensor(self, x):
        import torch

        with torch.inference_mode():
            feats = self.model.encode_image(x.to(self.device)).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_images(self, images: list):
        return self.encode_image_tensor(self.image_tensor(images)).cpu()

    def encode_texts(self, texts: list[str]):
        import torch

        key = tuple(texts)
        if key not in self._text_cache:
            with torch.inference_mode():
                feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float()
            self._text_cache[key] = (feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu()
        return self._text_cache[key]

    def label_embeddings(self, prompts_per_label: list[list[str]]):
        """One unit-norm embedding per label: the renormalised mean of its prompts' embeddings."""
        import torch

        rows = []
        for prompts in prompts_per_label:
            mean = self.encode_texts(list(prompts)).mean(0)
            rows.append(mean / mean.norm().clamp_min(1e-12))
        return torch.stack(rows)

    def logit_scale(self) -> float:
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.exp().item()) if scale is not None else 100.0


def clip_features_module(backend: ClipBackend):
    """``ClipFeatures`` for ``backend``: a torchmetrics-compatible feature extractor."""
    import torch

    class ClipFeatures(torch.nn.Module):
        """Unit-norm CLIP image embeddings of already-normalised (N, 3, H, W) float batches.

        Stands in for torchmetrics' Inception network, whose weights cannot be downloaded here:
        KID/FID computed with it are *CLIP-feature* distances (``kid-clip``), comparable only with
        each other, not with published Inception FIDs.
        """

        def __init__(self):
            super().__init__()
            self.backend = backend
            self.num_features = int(backend.encode_image_tensor(
                torch.zeros(1, 3, *backend.image_size)).shape[-1])

        def forward(self, x):
            return self.backend.encode_image_tensor(x).cpu()

    return ClipFeatures()


class UsesEvaluationClip:
    """Mixin for scorers backed by the evaluation CLIP: which model, and its cached instance."""

    def _init_clip(self, clip_model: str = MINI_CLIP, clip_pretrained: str | None = None,
                   clip_root: str | None = None) -> None:
        self.clip_model, self.clip_pretrained, self.clip_root = clip_model, clip_pretrained, clip_root

    @property
    def clip(self):
        return load_clip(self.clip_model, self.clip_pretrained, self.device,
                         str(self.clip_root) if self.clip_root else None)

    @property
    def backend(self) -> str:
        return f"{self.clip_model}/{self.clip_pretrained}" if self.clip_pretrained else self.clip_model
