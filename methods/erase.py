"""Running a method: resolve its config, check every input, erase, meter the cost, record it.

    from bench.tiny import tiny_pipeline
    from methods.erase import erase
    from methods.delta import load_edit
    result = erase(tiny_pipeline(), "fewshot-te", "snoopy", seed=0, overrides={"steps": 2})
    result.save("out/snoopy")                       # delta.safetensors + edit.json
    edited = load_edit(tiny_pipeline(), "out/snoopy")

Config layers: the authors' defaults < the model family's (methods/defaults.py) < the variant <
``--set`` overrides. Every input is checked before any work; if the method fails, the pipeline
is restored and nothing is written. The cost of an edit is its wall-clock seconds, its peak
memory (on CUDA the allocator's peak; on the CPU the resident set's high-water mark during the
edit, sampled) and the parameters it changed.
"""

from __future__ import annotations

import time
from typing import Callable

from bench.core.errors import EraselabError
from methods.base import EditContext, ErasureMethod
from methods.delta import (INFERENCE_PREFIX, STATE_ATTR, EditResult, build_record, check_out_dir,
                           delta_against_base, edit_state, named_tensors, unwrap, wrap)


def get_method(name: str) -> type[ErasureMethod]:
    from methods import METHODS
    return METHODS.get(name)


def resolve_method_config(method_cls, family: str, variant: str | None = None,
                          overrides: dict | None = None, grid: dict | None = None):
    """Config = authors' defaults < family defaults (methods/defaults.py) < variant < overrides
    (< one setting of a tuning grid, named as such in an error)."""
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
    if grid:
        layers.append(("--grid", dict(grid)))
    return resolve_config(name, method_cls.Config, layers)


def resolve_concept(concept, catalog="miniworld"):
    """A Concept object passes through; a name is looked up in ``catalog`` (a name or Catalog)."""
    from bench.catalog import Catalog, Concept, load_catalog

    if isinstance(concept, Concept):
        cat = catalog if isinstance(catalog, Catalog) else None
        return concept, cat
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    return cat[concept], cat


class PeakMemory:
    """The peak memory of the work inside ``with PeakMemory(device) as peak:``, in MiB above the
    start (``peak.mb``, ``peak.kind``). On CUDA: the allocator's peak. On the CPU: the resident set,
    sampled every few milliseconds by a thread (the process-wide high-water mark would read 0 for
    every edit that stays below an earlier peak, and tracemalloc is far too slow). The C heap's
    free pages go back to the system first (glibc ``malloc_trim``): memory an earlier edit freed
    but the heap kept would otherwise be reused without raising the resident set, and the edit
    would read 0."""

    INTERVAL = 0.005

    def __init__(self, device):
        self.device, self.mb, self.kind = device, 0.0, ""

    def __enter__(self):
        import threading
        import torch
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        _trim_heap()
        self.start = self.high = _resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.INTERVAL):
            self.high = max(self.high, _resident_bytes())

    def __exit__(self, *exc):
        import torch
        if self.device.type == "cuda":
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
            self.kind = "cuda-max-allocated-delta"
            return False
        self._stop.set()
        self._thread.join()
        self.high = max(self.high, _resident_bytes())
        self.mb, self.kind = (self.high - self.start) / 2**20, "cpu-rss-peak-delta"
        return False


def _trim_heap() -> None:
    """Return the C heap's free pages to the system (glibc only; elsewhere nothing happens)."""
    import ctypes
    import ctypes.util
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _resident_bytes() -> int:
    """This process's resident set size (Linux /proc; elsewhere the high-water mark)."""
    import os
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def erase(pipe, method: str, concept, *, variant: str | None = None, overrides: dict | None = None,
          images: list | None = None, images_dir=None, seed: int = 0, catalog="miniworld",
          progress: bool = True, out_dir=None, on_checkpoint: Callable | None = None,
          fewshot_source: Callable | None = None) -> EditResult:
    """Erase ``concept`` from ``pipe`` with ``method``; see the module docstring.

    Every input is checked before any work; if the method fails the pipeline is restored and
    nothing is written. ``out_dir`` (optional) saves the edit on success. A method that needs
    few-shot images gets ``images``, else ``fewshot_source(concept, k, seed, size)`` (``size``: the
    pipeline's image side), else the concept's catalog source (bench.fewshot).
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
    with PeakMemory(device) as memory:
        if method_cls.needs_images and images is None:
            k = getattr(config, method_cls.images_field)
            if fewshot_source is not None:
                size = inner.unet.config.sample_size * inner.vae_scale_factor
                images = fewshot_source(concept_obj, k, seed, size)
            else:
                images = load_fewshot_images(concept_obj, k, seed, images_dir=images_dir)
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
    peak_mb, peak_kind = memory.mb, memory.kind

    with torch.no_grad():
        for n in names:
            if n not in state.originals and not torch.equal(snapshot[n], tensors[n].detach()):
                state.originals[n] = snapshot[n]
    edit = {**describe(), "seconds": round(seconds, 4), "peak_memory_mb": round(peak_mb, 2),
            "peak_memory_kind": peak_kind}
    state.edits.append(edit)
    if spec is not None:
        if ctx.inference_tensors:  # the spec's own tensors, under a key prefix of its own
            prefix = f"{INFERENCE_PREFIX}{len(state.inference)}."
            spec = {**spec, "tensors": prefix}
            state.inference_tensors.update({prefix + n: t.detach().cpu().clone()
                                            for n, t in ctx.inference_tensors.items()})
        state.inference.append(spec)
    delta = delta_against_base(inner)
    edit["params_changed_this_edit"] = sum(
        int((tensors[n].detach() != snapshot[n]).sum()) for n in names)
    record = build_record(inner, list(state.edits), list(state.inference), delta, state.originals)
    result = EditResult(pipeline=wrap(inner, state), delta=delta, record=record,
                        inference_tensors=dict(state.inference_tensors))
    if out_dir is not None:
        result.save(out_dir)
    return result
