"""The mini CLIP: a small open_clip model registered offline, and its image/text preprocessing.

It is the mini world's evaluation CLIP (CLIP score, zero-shot mapping, the style probe's
features) and, converted by bench/miniworld/convert.py, the text encoder of the mini Stable
Diffusion, as CLIP ViT-L/14 is for SD 1.x. The tokenizer is the real CLIP BPE that open_clip
ships. Build with ``build_clip()``; load the shipped weights with ``load_clip(folder)``.
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

MODEL_NAME = "miniworld-clip"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "model.safetensors"

# 8M parameters, 6.3M of them the token table: small enough to train on 2 CPU cores (4,000
# steps at batch 128 take 26 minutes, clip/metrics.json); 6 vision layers because shape, not
# colour, is what the mini world's classes differ by.
CLIP_CONFIG = {
    "embed_dim": 128,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 6, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation, kept for familiarity
STD = (0.26862954, 0.26130258, 0.27577711)


def register_config(config: dict = CLIP_CONFIG, name: str = MODEL_NAME) -> None:
    """Register the config with open_clip under ``name`` (no network involved)."""
    import open_clip
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.json").write_text(json.dumps(config))
        open_clip.add_model_config(tmp)


def build_clip(config: dict = CLIP_CONFIG, name: str = MODEL_NAME):
    import open_clip
    register_config(config, name)
    model = open_clip.create_model(name, pretrained=None)
    return model


@lru_cache(maxsize=4)
def get_tokenizer(context_length: int = CLIP_CONFIG["text_cfg"]["context_length"]):
    import open_clip
    return open_clip.get_tokenizer("ViT-B-32", context_length=context_length)


def tokenize(texts: list[str], context_length: int = CLIP_CONFIG["text_cfg"]["context_length"]) -> torch.Tensor:
    return get_tokenizer(context_length)(list(texts))


def images_to_tensor(images) -> torch.Tensor:
    """uint8 images (N,H,W,3 array, or a list of PIL images / arrays) -> normalised float (N,3,H,W)."""
    if isinstance(images, torch.Tensor):
        array = images
    else:
        array = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))
    x = array.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def save_clip(model, folder: Path, config: dict = CLIP_CONFIG, fp16: bool = True) -> list[Path]:
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps({"model_name": MODEL_NAME, **config}, indent=2))
    return [folder / WEIGHTS_FILE, folder / CONFIG_FILE]


def load_clip(folder: Path, device: str = "cpu"):
    """Rebuild the mini CLIP from a folder written by ``save_clip`` (strict load, float32)."""
    from safetensors.torch import load_file
    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    name = config.pop("model_name", MODEL_NAME)
    model = build_clip(config, name)
    state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


@torch.no_grad()
def text_embeddings(model, labels: list[str]) -> torch.Tensor:
    """One unit-norm embedding per label: the mean of its prompts' embeddings, with the prompts the
    harness's zero-shot scorers use on the miniworld catalog (bench.labels)."""
    from bench.catalog import load_catalog
    from bench.labels import zero_shot_prompts
    prompts = zero_shot_prompts(load_catalog("miniworld"))
    rows = []
    for label in labels:
        feats = model.encode_text(tokenize(prompts[label]))
        feats = feats / feats.norm(dim=-1, keepdim=True)
        mean = feats.mean(0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


@torch.no_grad()
def image_embeddings(model, images, batch_size: int = 256) -> torch.Tensor:
    outs = []
    for start in range(0, len(images), batch_size):
        x = images_to_tensor(images[start:start + batch_size])
        feats = model.encode_image(x)
        outs.append(feats / feats.norm(dim=-1, keepdim=True))
    return torch.cat(outs)


def zero_shot_predict(model, images, labels: list[str]) -> list[str]:
    logits = image_embeddings(model, images) @ text_embeddings(model, labels).T
    return [labels[i] for i in logits.argmax(dim=1).tolist()]
