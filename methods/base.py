"""The erasure-method interface, the edit (delta) format, and ``erase`` / ``load_edit``.

A method is a subclass of ``ErasureMethod`` registered by name in ``methods.METHODS``. It turns a
diffusers Stable Diffusion pipeline, a catalog concept, optional few-shot images and a typed config
into an edited pipeline: weight methods edit the pipeline's tensors in place (``apply``);
inference-time methods (negative prompt, SLD) leave the weights alone and return a guidance spec
that ``methods.inference.GuidedPipeline`` applies at sampling time.

    from bench.tiny import tiny_pipeline
    from methods.base import erase, load_edit
    result = erase(tiny_pipeline(), "fewshot-te", "snoopy", images_dir="imgs/", seed=0,
                   overrides={"steps": 2})
    result.save("out/snoopy")                       # delta.safetensors + edit.json
    edited = load_edit(tiny_pipeline(), "out/snoopy")

An edit on disk is a *delta*: only the tensors that differ from the base model
(``delta.safetensors``, keys ``unet.<param>`` / ``text_encoder.<param>`` / ``vae.<param>``) and
``edit.json`` (method, version, resolved config, concept, base id and hash, seconds, peak memory,
parameters changed, the list of edits). Erasing again on an already-edited pipeline (sequential
erasure) accumulates: the delta always covers every change against the original base, and
``reset_edits(pipe)`` restores the base bit-exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

from bench.core.errors import EraselabError
from bench.core.files import replace_folder

FORMAT = "eraselab-edit"
FORMAT_VERSION = 1
DELTA_FILE = "delta.safetensors"
EDIT_FILE = "edit.json"
COMPONENTS = ("unet", "text_encoder", "vae")
# Always part of the base hash, so that even an edit that changes nothing is tied to its base.
FINGERPRINT = ("unet.conv_in.weight", "unet.conv_out.weight")


@dataclasses.dataclass
class EmptyConfig:
    """A method without hyperparameters."""


class ErasureMethod:
    """Base class of every erasure method; subclasses set the class attributes and ``apply``.

    ``name`` is given by the registry (methods/__init__.py's ``TABLE``, or a ``@METHODS.register``
    decorator), never written in the class."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Config: ClassVar[type] = EmptyConfig
    variants: ClassVar[tuple[str, ...]] = ()   # accepted --variant values (free-form if open)
    variant_field: ClassVar[str | None] = None  # the config key that --variant sets
    open_variants: ClassVar[bool] = False       # True: variant strings are parsed by the method
    needs_images: ClassVar[bool] = False        # uses real few-shot images of the concept
    images_field: ClassVar[str] = "k"           # config key holding the image count
    inference_time: ClassVar[bool] = False      # no weights change; returns a guidance spec
    # What the method trains, in the words of methods/subsets.py: the config's ``params`` when it
    # has one, else ``subset``; ``component`` is the part of the pipeline those words name.
    component: ClassVar[str] = "unet"           # "unet" or "text_encoder"
    subset: ClassVar[str | None] = None         # None (and no ``params``): trains nothing
    # Config overrides that make one erase take seconds on the tiny pipeline (the method battery,
    # tests/test_methods.py): a contract check, not an erasure.
    quick_overrides: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        from methods import METHODS
        METHODS.fulfil(cls)  # a class methods.TABLE names gets its name as it is defined

    def trainable(self, pipe, config) -> list[str]:
        """Qualified names (``unet.<param>``...) of every tensor this edit may change."""
        spec = getattr(config, "params", None) or self.subset
        if spec is None:
            return []
        from methods.subsets import select
        return select(pipe, spec, self.component, self.name)

    def apply(self, ctx: "EditContext") -> None:
        """Edit ``ctx.pipe`` in place (weight methods)."""
        raise NotImplementedError

    def inference_spec(self, ctx: "EditContext") -> dict:
        """The guidance spec of an inference-time method (see methods/inference.py)."""
        raise NotImplementedError


@dataclasses.dataclass
class EditContext:
    """Everything a method's ``apply`` needs, plus the shared run-time services."""

    method: str
    pipe: Any
    concept: Any  # bench.catalog.Concept
    catalog: Any  # bench.catalog.Catalog or None
    config: Any
    family: str
    seed: int
    images: list | None
    progress: bool = True
    on_checkpoint: Callable | None = None
    # Set by ``erase``: tag -> this edit's record entry so far (seconds, config, ...).
    describe: Callable | None = None

    def __post_init__(self):
        import torch
        # Seeded generators, never the global RNG: CPU generators give the same stream on any
        # device (tensors are drawn on CPU and moved), so a run is reproducible bit for bit on CPU.
        self.generator = torch.Generator("cpu").manual_seed(self.seed)
        self.rng = random.Random(f"{self.method}:{self.concept.name}:{self.seed}")
        self.device = self.pipe.unet.device
        self.snapshot: dict = {}  # base values of the tensors this edit may change (set by erase)

    def progress_bar(self, total: int, desc: str = ""):
        from tqdm import tqdm
        return tqdm(total=total, desc=desc or f"{self.method} {self.concept.name}",
                    disable=not self.progress, file=sys.stderr, leave=False)

    def check_finite(self, loss, step: int, total: int) -> float:
        """The loss as a float; a NaN/inf loss stops the run with an error naming the step."""
        value = float(loss.detach())
        if value != value or value in (float("inf"), float("-inf")):
            raise EraselabError(f"{self.method}: loss became {value} at step {step}/{total} "
                                f"(lr={getattr(self.config, 'lr', '?')}); lower lr or steps")
        return value

    def checkpoint(self, tag: str) -> None:
        """Offer an intermediate edit (e.g. per epoch) to the caller's ``on_checkpoint(tag, result)``:
        an ``EditResult`` (no pipeline) whose ``save`` writes a folder ``load_edit`` reads."""
        if self.on_checkpoint is None:
            return
        import torch
        state = edit_state(self.pipe)
        tensors = named_tensors(self.pipe)
        originals = {**self.snapshot, **state.originals}
        delta = {n: tensors[n].detach().clone() for n, orig in originals.items()
                 if not torch.equal(tensors[n].detach(), orig)}
        edit = self.describe(tag) if self.describe is not None else {"method": self.method}
        record = build_record(self.pipe, [*state.edits, edit], list(state.inference), delta, originals)
        self.on_checkpoint(tag, EditResult(pipeline=None, delta=delta, record=record))


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


def _delta_against_base(pipe) -> dict:
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
    state = edit_state(pipe)
    tensors = named_tensors(unwrap(pipe))
    base_hash, hash_of = _base_hash(tensors, originals, delta)
    last = edits[-1]
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "eraselab_version": __version__,
            **{k: last.get(k) for k in ("method", "method_version", "variant", "config", "concept",
                                        "concept_type", "catalog", "family", "seed")},
            **({"checkpoint": last["checkpoint"]} if "checkpoint" in last else {}),
            "base": {"id": state.base_id, "hash": base_hash, "hash_of": hash_of},
            "seconds": last.get("seconds"), "peak_memory_mb": last.get("peak_memory_mb"),
            "peak_memory_kind": last.get("peak_memory_kind"),
            "params_changed": sum(int((t != originals[n]).sum()) for n, t in delta.items()),
            "tensors_changed": len(delta), "edits": list(edits), "inference": list(inference),
            "delta_file": DELTA_FILE}


def reset_edits(pipe):
    """Restore the base weights of an edited pipeline bit-exactly; returns the plain pipeline."""
    import torch
    inner = unwrap(pipe)
    state = edit_state(inner, create=False)
    if state is not None:
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
        tensors = {n: t.detach().cpu().contiguous() for n, t in result.delta.items()}
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


def load_edit(base_pipeline, delta_dir, copy: bool = False):
    """Rebuild an edited pipeline from ``base_pipeline`` and a saved delta folder.

    The base's hash (over the tensors the delta replaces, plus a fingerprint) must match the one
    recorded at erase time. The delta is applied IN PLACE unless ``copy=True``; ``reset_edits``
    undoes it. Returns the pipeline, wrapped in a ``GuidedPipeline`` for inference-time edits.
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
    tensors = named_tensors(pipe)
    for name, t in delta.items():
        if name not in tensors:
            raise EraselabError(f"{delta_path}: tensor {name!r} does not exist in the base pipeline")
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise EraselabError(f"{delta_path}: tensor {name!r} has shape {tuple(t.shape)}, the "
                                f"base has {tuple(tensors[name].shape)}")
    base = record["base"]
    missing = [n for n in base["hash_of"] if n not in tensors]
    if missing:
        raise EraselabError(f"{delta_dir}: base pipeline lacks {missing[0]!r}; wrong base model")
    actual = hash_tensors({n: tensors[n] for n in base["hash_of"]})
    if actual != base["hash"]:
        raise EraselabError(f"{delta_dir}: base model hash mismatch (edit made on {base['id']!r}, "
                            f"hash {base['hash'][:12]}...; this base hashes {actual[:12]}...)")
    state = edit_state(pipe)
    with torch.no_grad():
        for name, t in delta.items():
            state.originals[name] = tensors[name].detach().clone()
            tensors[name].copy_(t.to(tensors[name].dtype))
    state.edits = list(record.get("edits", []))
    state.inference = list(record.get("inference", []))
    return _wrap(pipe, state)


def _wrap(pipe, state: EditState):
    if not state.inference:
        return pipe
    from methods.inference import GuidedPipeline
    return GuidedPipeline(pipe, state.inference)


# --- erase ---------------------------------------------------------------------------------
def get_method(name: str) -> type[ErasureMethod]:
    from methods import METHODS
    return METHODS.get(name)


def resolve_method_config(method_cls, family: str, variant: str | None = None,
                          overrides: dict | None = None):
    """Config = authors' defaults < family defaults (methods/defaults.py) < variant < overrides."""
    from methods.config import resolve_config
    from methods.defaults import family_defaults

    name = method_cls.name
    layers = [(f"defaults for family {family!r}", family_defaults(name, family))]
    if variant is not None:
        if method_cls.variant_field is None:
            raise EraselabError(f"{name}: takes no --variant (got {variant!r})")
        if not method_cls.open_variants and variant not in method_cls.variants:
            raise EraselabError(f"{name}: unknown variant {variant!r}; expected one of "
                                f"{', '.join(method_cls.variants)}")
        layers.append(("--variant", {method_cls.variant_field: variant}))
    layers.append(("--set", dict(overrides or {})))
    return resolve_config(name, method_cls.Config, layers)


def resolve_concept(concept, catalog="miniworld"):
    """A Concept object passes through; a name is looked up in ``catalog`` (a name or Catalog)."""
    from bench.catalog import Catalog, Concept, load_catalog

    if isinstance(concept, Concept):
        cat = catalog if isinstance(catalog, Catalog) else None
        return concept, cat
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    return cat[concept], cat


def _peak_memory_start(device) -> int:
    import torch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _peak_memory_mb(device, start: int) -> tuple[float, str]:
    import torch
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - start) / 2**20, "cuda-max-allocated-delta"
    # ru_maxrss only rises: the delta is how far this edit pushed the process's peak (0 when it
    # stayed under an earlier peak), at no per-allocation cost (tracemalloc is far too slow).
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024, "maxrss-delta"


def erase(pipe, method: str, concept, *, variant: str | None = None, overrides: dict | None = None,
          images: list | None = None, images_dir=None, seed: int = 0, catalog="miniworld",
          progress: bool = True, out_dir=None, on_checkpoint: Callable | None = None) -> EditResult:
    """Erase ``concept`` from ``pipe`` with ``method``; see the module docstring.

    Every input is checked before any work; if the method fails the pipeline is restored and
    nothing is written. ``out_dir`` (optional) saves the edit on success.
    """
    import torch
    from bench.fewshot import load_fewshot_images

    method_cls = get_method(method)
    concept_obj, cat = resolve_concept(concept, catalog)
    inner = unwrap(pipe)
    from methods.defaults import detect_family
    family = detect_family(inner)
    config = resolve_method_config(method_cls, family, variant, overrides)
    if out_dir is not None:
        check_out_dir(out_dir)
    if not method_cls.needs_images and (images is not None or images_dir is not None):
        raise EraselabError(f"{method}: uses no few-shot images; drop --images")

    t0 = time.perf_counter()
    device = inner.unet.device
    mem0 = _peak_memory_start(device)
    if method_cls.needs_images and images is None:
        images = load_fewshot_images(concept_obj, getattr(config, method_cls.images_field), seed,
                                     images_dir=images_dir)
    impl = method_cls()
    from methods.config import config_to_dict

    def describe(checkpoint: str | None = None) -> dict:
        """This edit's entry in ``edit.json`` (``checkpoint``: an intermediate one's tag)."""
        return {"method": method, "method_version": method_cls.version,
                "variant": getattr(config, method_cls.variant_field) if method_cls.variant_field else None,
                "config": config_to_dict(config), "concept": concept_obj.name,
                "concept_type": concept_obj.type, "catalog": getattr(cat, "name", None),
                "family": family, "seed": seed, "seconds": round(time.perf_counter() - t0, 4),
                "images": len(images) if images is not None else 0,
                **({"checkpoint": checkpoint} if checkpoint else {})}

    ctx = EditContext(method=method, pipe=inner, concept=concept_obj, catalog=cat, config=config,
                      family=family, seed=seed, images=images, progress=progress,
                      on_checkpoint=on_checkpoint, describe=describe)
    state = edit_state(inner)
    tensors = named_tensors(inner)
    names = impl.trainable(inner, config)
    unknown = [n for n in names if n not in tensors]
    if unknown:
        raise RuntimeError(f"{method}: claims unknown tensors {unknown[:3]}")
    snapshot = {n: tensors[n].detach().clone() for n in names}
    ctx.snapshot = snapshot
    grad_flags = {n: p.requires_grad for n, p in tensors.items()}
    spec = None
    try:
        if method_cls.inference_time:
            spec = impl.inference_spec(ctx)
        else:
            impl.apply(ctx)
    except BaseException:
        with torch.no_grad():
            for n, t in snapshot.items():
                tensors[n].copy_(t)
        if not state.originals and not state.edits and not state.inference:
            delattr(inner, STATE_ATTR)
        raise
    finally:
        for n, p in tensors.items():
            p.requires_grad_(grad_flags[n])
            p.grad = None
    seconds = time.perf_counter() - t0
    peak_mb, peak_kind = _peak_memory_mb(device, mem0)

    with torch.no_grad():
        for n in names:
            if n not in state.originals and not torch.equal(snapshot[n], tensors[n].detach()):
                state.originals[n] = snapshot[n]
    edit = {**describe(), "seconds": round(seconds, 4), "peak_memory_mb": round(peak_mb, 2),
            "peak_memory_kind": peak_kind}
    state.edits.append(edit)
    if spec is not None:
        state.inference.append(spec)
    delta = _delta_against_base(inner)
    edit["params_changed_this_edit"] = sum(
        int((tensors[n].detach() != snapshot[n]).sum()) for n in names)
    record = build_record(inner, list(state.edits), list(state.inference), delta, state.originals)
    result = EditResult(pipeline=_wrap(inner, state), delta=delta, record=record)
    if out_dir is not None:
        result.save(out_dir)
    return result
