"""The edit format: an edit is a *delta* against its base model, applied and saved bit-exactly.

    from methods.delta import load_edit, reset_edits
    edited = load_edit(pipe, "runs/x/edits/569dccc287da89d4")   # checks the base's hash first
    reset_edits(edited)                                         # the base again, bit for bit

On disk: ``delta.safetensors`` (only the tensors that differ from the base, keys
``unet.<param>`` / ``text_encoder.<param>`` / ``vae.<param>``) and ``edit.json`` (method, version,
resolved config, concept, base id and hash, seconds, peak memory, parameters changed, the list of
edits). Erasing again on an already-edited pipeline (sequential erasure) accumulates: the delta
always covers every change against the original base. Nothing here is ever unpickled: deltas are
safetensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.core.errors import EraselabError
from bench.core.files import replace_folder

FORMAT = "eraselab-edit"
FORMAT_VERSION = 1
DELTA_FILE = "delta.safetensors"
EDIT_FILE = "edit.json"
COMPONENTS = ("unet", "text_encoder", "vae")
INFERENCE_PREFIX = "inference."  # delta-file keys of the guidance specs' own tensors
# Always part of the base hash, so that even an edit that changes nothing is tied to its base.
FINGERPRINT = ("unet.conv_in.weight", "unet.conv_out.weight")


# --- tensors of a pipeline ---------------------------------------------------------------
def named_tensors(pipe) -> dict:
    """Every parameter of the edited components, by qualified name."""
    out = {}
    for comp in COMPONENTS:
        module = getattr(pipe, comp, None)
        if module is None:
            continue
        for name, param in module.named_parameters():
            out[f"{comp}.{name}"] = param
    return out


def _tensor_bytes(t) -> bytes:
    import torch
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def hash_tensors(tensors: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(_tensor_bytes(t))
    return digest.hexdigest()


# --- edit state carried by an edited pipeline ----------------------------------------------
@dataclasses.dataclass
class EditState:
    base_id: str
    originals: dict = dataclasses.field(default_factory=dict)  # name -> base tensor (changed ones)
    edits: list = dataclasses.field(default_factory=list)      # edit records, in order
    inference: list = dataclasses.field(default_factory=list)  # guidance specs, in order
    # tensors the guidance specs use (an adapter applied at sampling time), keyed
    # ``inference.<i>.<name>`` for the i-th spec; saved in the delta file beside the weights
    inference_tensors: dict = dataclasses.field(default_factory=dict)
    # spec index -> handles of the hooks a ``persistent_hooks`` method installed on the pipeline
    # (methods/base.py); they stay while the edit is loaded and reset_edits removes them
    hooks: dict = dataclasses.field(default_factory=dict)


STATE_ATTR = "_eraselab_edit_state"


def unwrap(pipe):
    """The diffusers pipeline inside an inference-time wrapper (or the pipeline itself)."""
    return getattr(pipe, "eraselab_inner", pipe)


def base_model_id(pipe) -> str:
    return str(getattr(pipe, "name_or_path", None) or pipe.config.get("_name_or_path") or "unknown")


def edit_state(pipe, create: bool = True) -> EditState | None:
    pipe = unwrap(pipe)
    state = getattr(pipe, STATE_ATTR, None)
    if state is None and create:
        state = EditState(base_id=base_model_id(pipe))
        setattr(pipe, STATE_ATTR, state)
    return state


def delta_against_base(pipe) -> dict:
    import torch
    state = edit_state(pipe)
    tensors = named_tensors(unwrap(pipe))
    return {n: tensors[n].detach().clone() for n, orig in state.originals.items()
            if not torch.equal(tensors[n].detach(), orig)}


def _base_hash(tensors: dict, originals: dict, names) -> tuple[str, list[str]]:
    """Hash of the base model's values of ``names`` plus the fingerprint tensors."""
    hash_of = sorted(set(names) | {n for n in FINGERPRINT if n in tensors})
    return hash_tensors({n: originals.get(n, tensors[n]) for n in hash_of}), hash_of


def build_record(pipe, edits: list[dict], inference: list, delta: dict, originals: dict) -> dict:
    """``edit.json`` for ``delta`` (every change against the base, whose values are ``originals``);
    the last of ``edits`` names the method, config, concept and cost."""
    from bench import __version__
    from methods.change_map import change_by_group
    state = edit_state(pipe)
    tensors = named_tensors(unwrap(pipe))
    base_hash, hash_of = _base_hash(tensors, originals, delta)
    last = edits[-1]
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "eraselab_version": __version__,
            **{k: last.get(k) for k in ("method", "method_version", "variant", "config", "concept",
                                        "concept_type", "catalog", "family", "seed")},
            **({"checkpoint": last["checkpoint"]} if "checkpoint" in last else {}),
            "base": {"id": state.base_id, "hash": base_hash, "hash_of": hash_of,
                     # the replaced values alone: what another base must hold to take the edit
                     "replaced_hash": hash_tensors({n: originals.get(n, tensors[n]) for n in sorted(delta)})},
            "seconds": last.get("seconds"), "peak_memory_mb": last.get("peak_memory_mb"),
            "peak_memory_kind": last.get("peak_memory_kind"),
            "params_changed": sum(int((t != originals[n]).sum()) for n, t in delta.items()),
            "tensors_changed": len(delta), "change_by_group": change_by_group(delta, originals),
            **({"inference_tensors": len(state.inference_tensors)} if state.inference_tensors else {}),
            "edits": list(edits), "inference": list(inference),
            "delta_file": DELTA_FILE}


def reset_edits(pipe):
    """Restore the base weights of an edited pipeline bit-exactly; returns the plain pipeline."""
    import torch
    inner = unwrap(pipe)
    state = edit_state(inner, create=False)
    if state is not None:
        for handles in state.hooks.values():
            for handle in handles:
                handle.remove()
        tensors = named_tensors(inner)
        with torch.no_grad():
            for name, orig in state.originals.items():
                tensors[name].copy_(orig)
        delattr(inner, STATE_ATTR)
    return inner


# --- the result of an erasure ------------------------------------------------------------
@dataclasses.dataclass
class EditResult:
    """An edited pipeline plus its delta and record (what ``edit.json`` holds)."""

    pipeline: Any
    delta: dict          # qualified name -> edited tensor (every change vs the base)
    record: dict
    inference_tensors: dict = dataclasses.field(default_factory=dict)  # the specs' own tensors

    @property
    def seconds(self) -> float:
        return self.record["seconds"]

    @property
    def params_changed(self) -> int:
        return self.record["params_changed"]

    def save(self, out_dir, overwrite: bool = False) -> Path:
        return save_edit(self, out_dir, overwrite=overwrite)


def check_out_dir(out_dir, overwrite: bool = False) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EraselabError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise EraselabError(f"{out_dir}: folder exists and is not empty; choose another --out")
    return out_dir


def save_edit(result: EditResult, out_dir, overwrite: bool = False) -> Path:
    """Write ``delta.safetensors`` + ``edit.json`` atomically (a temp folder renamed into place)."""
    from safetensors.torch import save_file

    out_dir = check_out_dir(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the temp name lets a later run remove it once this process is gone (kill -9)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        tensors = {n: t.detach().cpu().contiguous()
                   for n, t in {**result.delta, **result.inference_tensors}.items()}
        try:
            save_file(tensors, str(tmp / DELTA_FILE), metadata={"format": FORMAT})
        except Exception as exc:  # noqa: BLE001 - safetensors reports I/O failures as its own type
            if type(exc).__name__ != "SafetensorError":
                raise
            raise _safetensors_os_error(exc, tmp / DELTA_FILE) from None
        (tmp / EDIT_FILE).write_text(json.dumps(result.record, indent=2, sort_keys=False) + "\n")
        replace_folder(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _safetensors_os_error(exc: Exception, path: Path) -> OSError:
    """safetensors' I/O failure as the OSError it wraps (``I/O error: ... (os error 28)``), so
    that callers handle a full disk the same way for every file they write."""
    import errno
    import re
    match = re.search(r"os error (\d+)|code: (\d+)", str(exc))
    code = int(next(g for g in match.groups() if g)) if match else errno.EIO
    return OSError(code, os.strerror(code), str(path))


def saved_inference_params(delta_dir) -> int:
    """How many numbers the saved edit adds for sampling (an adapter, an eraser, a projection):
    the sizes of its ``inference.`` tensors, read from the safetensors header alone."""
    from safetensors import SafetensorError, safe_open

    path = Path(delta_dir) / DELTA_FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            return sum(math.prod(f.get_slice(n).get_shape()) for n in f.keys() if n.startswith(INFERENCE_PREFIX))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise EraselabError(f"{path}: not a readable safetensors file ({exc})") from None


def read_edit_record(delta_dir) -> dict:
    path = Path(delta_dir) / EDIT_FILE
    if not path.is_file():
        raise EraselabError(f"{path}: missing; not an eraselab edit folder")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EraselabError(f"{path}: not valid JSON ({exc})") from None
    if record.get("format") != FORMAT:
        raise EraselabError(f"{path}: not an eraselab edit (format {record.get('format')!r})")
    if record.get("format_version") != FORMAT_VERSION:
        raise EraselabError(f"{path}: edit format version {record.get('format_version')!r}; "
                            f"this eraselab reads version {FORMAT_VERSION}")
    return record


def owned(tensors: dict) -> dict:
    """Copies, in memory of their own, of tensors read from a safetensors file.

    safetensors hands out views at the file's byte offsets, which are only 8-byte aligned; on an
    AVX-512 CPU the kernels sum an unaligned tensor in another order, so a tensor used straight
    from the file computes within ~1e-6 of the one it was saved from instead of exactly. A copy
    gets torch's 64-byte-aligned allocation. Tensors copied into a model's weights need none."""
    return {n: t.clone() for n, t in tensors.items()}


def load_edit(base_pipeline, delta_dir, copy: bool = False, transfer: bool = False):
    """Rebuild an edited pipeline from ``base_pipeline`` and a saved delta folder.

    The base's hash (over the tensors the delta replaces, plus a fingerprint) must match the one
    recorded at erase time. The delta is applied IN PLACE unless ``copy=True``; ``reset_edits``
    undoes it. Returns the pipeline, wrapped in a ``GuidedPipeline`` for inference-time edits.

    ``transfer=True`` plugs a text-encoder edit made on another model into this one (the seed
    paper's claim that an erased text encoder serves every model that shares it): the delta must
    touch the text encoder only, and this base must hold the very values it replaced.
    """
    import torch
    from safetensors.torch import load_file

    record = read_edit_record(delta_dir)
    delta_path = Path(delta_dir) / DELTA_FILE
    if not delta_path.is_file():
        raise EraselabError(f"{delta_path}: missing delta file")
    pipe = unwrap(base_pipeline)
    if copy:
        import copy as copy_module
        pipe = copy_module.deepcopy(pipe)
    if edit_state(pipe, create=False) is not None:
        raise EraselabError("load_edit needs an unedited base pipeline; call reset_edits(pipe) first")
    try:
        delta = load_file(str(delta_path))
    except Exception as exc:  # safetensors raises its own error types
        raise EraselabError(f"{delta_path}: unreadable delta ({exc})") from None
    inference_tensors = owned({n: delta.pop(n) for n in [n for n in delta if n.startswith(INFERENCE_PREFIX)]})
    tensors = named_tensors(pipe)
    for name, t in delta.items():
        if name not in tensors:
            raise EraselabError(f"{delta_path}: tensor {name!r} does not exist in the base pipeline")
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise EraselabError(f"{delta_path}: tensor {name!r} has shape {tuple(t.shape)}, the "
                                f"base has {tuple(tensors[name].shape)}")
    base = record["base"]
    if transfer:
        _check_transfer(delta, record, tensors, delta_dir)
    missing = [] if transfer else [n for n in base["hash_of"] if n not in tensors]
    if missing:
        raise EraselabError(f"{delta_dir}: base pipeline lacks {missing[0]!r}; wrong base model")
    actual = None if transfer else hash_tensors({n: tensors[n] for n in base["hash_of"]})
    if not transfer and actual != base["hash"]:
        raise EraselabError(f"{delta_dir}: base model hash mismatch (edit made on {base['id']!r}, "
                            f"hash {base['hash'][:12]}...; this base hashes {actual[:12]}...)")
    state = edit_state(pipe)
    with torch.no_grad():
        for name, t in delta.items():
            state.originals[name] = tensors[name].detach().clone()
            tensors[name].copy_(t.to(tensors[name].dtype))
    state.edits = list(record.get("edits", []))
    state.inference = list(record.get("inference", []))
    state.inference_tensors = inference_tensors
    try:
        return wrap(pipe, state)
    except BaseException:  # hooks that cannot be installed (a damaged edit): the base again
        reset_edits(pipe)
        raise


def _check_transfer(delta: dict, record: dict, tensors: dict, delta_dir) -> None:
    other = sorted(n for n in delta if not n.startswith("text_encoder."))
    if other or record.get("inference"):
        raise EraselabError(f"{delta_dir}: only a text-encoder edit transfers to another model; this one "
                            f"changes {(other or ['inference-time guidance'])[0]!r}")
    expected = record["base"].get("replaced_hash")
    if expected is None:
        raise EraselabError(f"{delta_dir}: the edit records no hash of the values it replaced (saved by an "
                            f"older eraselab); erase it again to transfer it")
    if hash_tensors({n: tensors[n] for n in sorted(delta)}) != expected:
        raise EraselabError(f"{delta_dir}: this model's text encoder differs from the one the edit was "
                            f"made on; a transfer needs the same text encoder")


def wrap(pipe, state: EditState):
    install_persistent_hooks(pipe, state)
    if not state.inference:
        return pipe
    from methods.guidance import GuidedPipeline
    return GuidedPipeline(pipe, state.inference, state.inference_tensors)


def install_persistent_hooks(pipe, state: EditState) -> None:
    """Install the hooks of each ``persistent_hooks`` spec (methods/base.py) not yet installed."""
    from methods import METHODS
    for i, spec in enumerate(state.inference):
        cls = METHODS.get(spec["method"])
        if i in state.hooks or not cls.persistent_hooks:
            continue
        prefix = spec.get("tensors")
        tensors = ({n[len(prefix):]: t for n, t in state.inference_tensors.items() if n.startswith(prefix)}
                   if prefix else {})
        state.hooks[i] = list(cls.install_hooks(pipe, spec, tensors))
