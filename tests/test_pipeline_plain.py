"""The shipped mini SD folder is a genuine diffusers pipeline: the plain call works, in float32.

``StableDiffusionPipeline.from_pretrained(folder)(prompts)`` with no dtype argument must load every
component in float32 and give the same image as the harness's own loader (bench/pipeline_io.py).
A folder written by ``save_half_pipeline`` (fp16 weights) must behave the same way.

    python -m pytest tests/test_pipeline_plain.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.core.paths import MINIWORLD_DIR

torch.set_num_threads(1)
PROMPTS = ["a photo of a church"]


def plain_call(folder) -> tuple[dict, np.ndarray]:
    """Exactly the call a diffusers user writes (2 steps to stay cheap), seeded."""
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    dtypes = {name: getattr(pipe, name).dtype for name in ("unet", "text_encoder", "vae")}
    image = pipe(PROMPTS, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                 output_type="np").images
    return dtypes, image


def harness_call(folder) -> np.ndarray:
    from bench.pipeline_io import load_pipeline
    pipe = load_pipeline(str(folder), progress=False)
    return pipe(PROMPTS, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                output_type="np").images


@pytest.mark.skipif(not (MINIWORLD_DIR / "pipeline" / "model_index.json").is_file(),
                    reason="needs the mini-world pipeline (datasets/miniworld/v1/pipeline)")
def test_shipped_folder_generates_with_the_plain_diffusers_call():
    from bench.miniworld.weights import verified_dir
    folder = verified_dir("pipeline")  # the checksums, text encoder config included, still hold
    dtypes, image = plain_call(folder)
    assert set(dtypes.values()) == {torch.float32}, dtypes
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()
    assert np.array_equal(image, harness_call(folder))


def test_half_folder_loads_in_float32_by_default(tmp_path):
    from bench.pipeline_io import save_half_pipeline
    from bench.tiny import tiny_pipeline
    save_half_pipeline(tiny_pipeline(), tmp_path / "pipe")
    config = json.loads((tmp_path / "pipe" / "text_encoder" / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "float32"
    from safetensors import safe_open
    with safe_open(str(tmp_path / "pipe" / "text_encoder" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # half the disk
    dtypes, image = plain_call(tmp_path / "pipe")
    assert set(dtypes.values()) == {torch.float32}, dtypes
    assert np.array_equal(image, harness_call(tmp_path / "pipe"))


def test_mark_float32_default_rewrites_only_configs_with_another_dtype(tmp_path):
    from bench.pipeline_io import mark_float32_default
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps({"dtype": "float16", "x": 1}))
    (tmp_path / "b" / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    (tmp_path / "c" / "config.json").write_text(json.dumps({"sample_size": 8}))
    changed = mark_float32_default(tmp_path)
    assert [p.parent.name for p in changed] == ["a", "b"]
    assert json.loads((tmp_path / "a" / "config.json").read_text()) == {"dtype": "float32", "x": 1}
    assert json.loads((tmp_path / "b" / "config.json").read_text()) == {"torch_dtype": "float32"}
    assert json.loads((tmp_path / "c" / "config.json").read_text()) == {"sample_size": 8}
