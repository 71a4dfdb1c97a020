"""Loading the model under test: a diffusers Stable Diffusion pipeline from a folder or hub id.

``load_pipeline(path_or_id, device="cpu", dtype=None)`` returns a ``StableDiffusionPipeline``
(safety checker off: eraselab measures erasure, and the checker would black out images). A local
folder is read as is; anything else is treated as a hub id and read from the local cache only when
``HF_HUB_OFFLINE=1``. Weights are read from safetensors files only (``use_safetensors=True``): a
folder that has only pickled ``.bin``/``.pt`` weights is refused, never unpickled. Any failure is
one line naming what could not be read. ``default_model()``
is the shipped mini-world pipeline (bench/miniworld/weights.py), checksum-verified.

``save_half_pipeline(pipe, out_dir)`` writes a folder with fp16 weights (half the disk) whose
configs still load in float32 when the caller names no dtype, so that the plain diffusers call
``StableDiffusionPipeline.from_pretrained(out_dir)(prompts)`` works on a CPU.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from bench.core.errors import EraselabError, shorten


def default_model() -> Path:
    from bench.miniworld.weights import verified_dir
    return verified_dir("pipeline")


# Config keys holding the dtype transformers loads a model in when asked for none ("auto" in 5.x):
# ``dtype`` in transformers 5.x configs, ``torch_dtype`` in 4.x ones.
DTYPE_KEYS = ("dtype", "torch_dtype")


def mark_float32_default(folder) -> list[Path]:
    """Make every ``config.json`` under ``folder`` that names a dtype name float32; returns the
    configs changed. diffusers loads its models in float32 whatever the weights' dtype, and
    transformers 5.x loads in the config's dtype, so without this an fp16 text encoder would meet
    a float32 UNet ("mat1 and mat2 must have the same dtype")."""
    changed = []
    for config in sorted(Path(folder).rglob("config.json")):
        data = json.loads(config.read_text())
        keys = [k for k in DTYPE_KEYS if data.get(k) not in (None, "float32")]
        if keys:
            data.update({k: "float32" for k in keys})
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            changed.append(config)
    return changed


def save_half_pipeline(pipe, out_dir) -> None:
    """Save ``pipe`` (moved to fp16 in place) so that a plain ``from_pretrained`` gives float32."""
    import torch
    pipe.to(torch.float16)
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    mark_float32_default(out_dir)


def load_pipeline(path_or_id, device: str = "cpu", dtype=None, progress: bool = True):
    import torch
    from diffusers import StableDiffusionPipeline

    if not progress:  # the loading bars of diffusers and transformers, on stderr
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog
        dlog.disable_progress_bar()
        tlog.disable_progress_bar()

    source = str(path_or_id)
    local = Path(source)
    if local.exists() and not (local / "model_index.json").is_file():
        raise EraselabError(f"{local}: not a diffusers pipeline folder (no model_index.json)")
    # An explicit dtype always: transformers 5.x loads a text encoder in its config's dtype
    # ("auto") while diffusers loads the UNet in float32, and a folder saved in fp16 without
    # ``mark_float32_default`` would mix the two.
    kwargs = dict(safety_checker=None, requires_safety_checker=False, use_safetensors=True,
                  torch_dtype=dtype if dtype is not None else torch.float32)
    import diffusers.utils.logging as dlog
    verbosity = dlog.get_verbosity()
    try:
        with warnings.catch_warnings():
            # diffusers >= 0.4x renames torch_dtype to dtype; older releases in our range only
            # know torch_dtype, so keep it and silence the rename notice.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
            # diffusers also logs a failed component load (at error level) before raising it:
            # the raised error below is the one line the user sees
            dlog.set_verbosity(dlog.CRITICAL)
            pipe = StableDiffusionPipeline.from_pretrained(source, **kwargs)
    except Exception as exc:  # diffusers/hub raise many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EraselabError(f"{source}: cannot load a Stable Diffusion pipeline ({shorten(first)})") from None
    finally:
        dlog.set_verbosity(verbosity)
    try:
        pipe = pipe.to(torch.device(device))
    except (RuntimeError, AssertionError) as exc:
        raise EraselabError(f"{source}: cannot move the pipeline to {device!r} ({exc})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe
