"""A tiny, randomly initialised Stable Diffusion pipeline for tests and ``--smoke`` runs.

``tiny_pipeline(seed=0)`` builds a complete diffusers ``StableDiffusionPipeline`` (UNet with
cross-attention, VAE, CLIP text encoder, CLIP tokenizer, DDIM scheduler) from configs, with no
download and in well under a second; the same seed gives bit-identical weights. Its text encoder
has hidden size 32, so eraselab treats it as the "mini" model family (methods/defaults.py).

The tokenizer is a character-level CLIP BPE (the 256 byte characters, the same with ``</w>``, no
merges): every word becomes its letters, which keeps the vocabulary (and the token embedding)
tiny while the real CLIP tokenizer code runs unchanged.

    python -c "from bench.tiny import tiny_pipeline; print(tiny_pipeline()('a dog', num_inference_steps=2))"
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

TINY_ID_PREFIX = "eraselab-tiny"
TINY_RESOLUTION = 16  # pixels: sample_size 8 latents x VAE factor 2


@lru_cache(maxsize=None)
def _tokenizer_dir() -> str:
    """Write the character-level vocab.json/merges.txt once per process (a private temp dir)."""
    from bench.miniworld.convert import bytes_to_unicode
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder = Path(tempfile.mkdtemp(prefix="eraselab-tiny-tok-"))
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab_list)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return str(folder)


def tiny_tokenizer():
    from transformers import CLIPTokenizer

    folder = _tokenizer_dir()
    return CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                         model_max_length=77)


def tiny_pipeline(seed: int = 0, prediction_type: str = "epsilon"):
    """A deterministic tiny StableDiffusionPipeline (float32, CPU, no safety checker)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
    tokenizer = tiny_tokenizer()
    # fork_rng: seeding here must not disturb the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            attention_head_dim=(2, 4), norm_num_groups=32)
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            block_out_channels=(32, 64), in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4,
            sample_size=TINY_RESOLUTION, norm_num_groups=32)
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, hidden_size=32, intermediate_size=37,
            layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=3, vocab_size=1000,
            max_position_embeddings=77, hidden_act="quick_gelu"))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, image_encoder=None,
                                   requires_safety_checker=False)
    for module in (unet, vae, text_encoder):
        module.eval()
    pipe.register_to_config(_name_or_path=f"{TINY_ID_PREFIX}:seed={seed}:{prediction_type}")
    pipe.set_progress_bar_config(disable=True)
    return pipe
