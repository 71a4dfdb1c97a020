"""The erasure-method interface: what a method declares and what its ``apply`` receives.

A method is a subclass of ``ErasureMethod`` named in ``methods.TABLE``. It turns a diffusers
Stable Diffusion pipeline, a catalog concept, optional few-shot images and a typed config into an
edited pipeline: weight methods edit the pipeline's tensors in place (``apply``); inference-time
methods (negative prompt, SLD) leave the weights alone and return a guidance spec that
``methods.guidance.GuidedPipeline`` applies at sampling time. ``methods.erase.erase`` runs a
method; ``methods.delta`` is the edit format on disk.

    from methods.base import ErasureMethod
    class MyMethod(ErasureMethod):
        Config = MyConfig
        subset = "xattn"            # what it trains, in methods/subsets.py's words
        def apply(self, ctx):       # ctx: EditContext
            ...
"""

from __future__ import annotations

import dataclasses
import random
import sys
from typing import Any, Callable, ClassVar

from bench.core.errors import EraselabError
from methods.config import learning_rates
from methods.delta import EditResult, build_record, edit_state, named_tensors
from methods.subsets import UNET, words


def finite_value(loss, what: str, step: int, total: int, config, advice: str) -> float:
    """``loss`` as a float, or one line naming ``what`` became NaN/inf at which step (with the lr)."""
    value = float(loss.detach())
    if value != value or value in (float("inf"), float("-inf")):
        raise EraselabError(f"{what} became {value} at step {step}/{total} "
                            f"({learning_rates(config)}); {advice}")
    return value


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
    # An inference-time method whose hooks act on every call the same way (no gate, nothing
    # from the call): ``install_hooks`` puts them on the pipeline's own modules for as long as
    # the edit is loaded, so whatever runs the UNet directly (white-box attacks, sampling
    # probes, fine-tuning, a later erasure) meets the edited model, as with a weight edit.
    persistent_hooks: ClassVar[bool] = False
    shared_base: ClassVar[bool] = False         # set (in its own body) by a loop several methods share
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
        """The guidance spec of an inference-time method (see methods/inference.py); tensors the
        spec needs go in ``ctx.inference_tensors`` (saved with the edit, handed back at sampling)."""
        raise NotImplementedError

    @classmethod
    def sampling_hooks(cls, pipe, spec: dict, tensors: dict, call: "SamplingCall"):
        """An inference-time method that acts inside the UNet or text encoder while a pipeline
        samples: a context manager that installs its hooks for one call (``tensors``: the spec's
        own, prefix removed). None: the method needs no hooks."""
        return None

    @classmethod
    def install_hooks(cls, pipe, spec: dict, tensors: dict) -> list:
        """A ``persistent_hooks`` method's hooks, installed on ``pipe``'s modules: their handles
        (``.remove()``), which ``methods.delta.reset_edits`` removes."""
        raise NotImplementedError


class UnetSubsetMethod(ErasureMethod):
    """A method whose ``--variant`` sets its config's ``params``: any UNet subset in the words of
    methods/subsets.py, unions too (the config's ``check`` validates them)."""

    shared_base = True
    variants = tuple(words(UNET))
    variant_field = "params"
    open_variants = True


@dataclasses.dataclass(frozen=True)
class SamplingCall:
    """What a sampling hook knows of the pipeline call it runs in."""

    prompts: list | None         # the prompts' text (None: the caller passed embeddings)
    images_per_prompt: int
    steps: int
    guidance: float

    @property
    def images(self) -> int:
        return len(self.prompts) * self.images_per_prompt if self.prompts else 0


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
        # an inference-time method's own tensors (an adapter its spec applies while sampling)
        self.inference_tensors: dict = {}

    def progress_bar(self, total: int, desc: str = ""):
        from tqdm import tqdm
        return tqdm(total=total, desc=desc or f"{self.method} {self.concept.name}",
                    disable=not self.progress, file=sys.stderr, leave=False)

    def check_finite(self, loss, step: int, total: int) -> float:
        """The loss as a float; a NaN/inf loss stops the run with an error naming the step."""
        return finite_value(loss, f"{self.method}: loss", step, total, self.config, "lower lr or steps")

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
        self.on_checkpoint(tag, EditResult(pipeline=None, delta=delta, record=record,
                                           inference_tensors=dict(state.inference_tensors)))
