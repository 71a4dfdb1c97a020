"""The probe interface: what an attack declares, what it receives, and what it finds.

A probe is a subclass of ``Probe`` named in ``attacks.TABLE``. Three kinds:

* **prompt probes** (``kind = "prompt"``, no optimisation): ``prompts(concept, catalog, n, seed)``
  returns prompt texts that ask for the concept without the evaluation templates' wording; the
  runner draws and judges them like any prompt set.
* **non-text probes** (``kind = "image"``, ``draws_images``): the model is fed something other
  than text (a masked concept image to fill in, a noisier sampler); ``draw`` makes the probe's
  images; a probe that keeps the best of several draws names the control it must be compared
  with (``compare_with``: best-of-N plain sampling, the same N and selector);
* **optimised attacks** (``kind = "text"``: discrete tokens; ``kind = "embedding"``: continuous
  vectors, reported apart because no text can carry them): ``attack(ctx)`` optimises against the
  edited model in ``ctx.pipe`` for one base prompt and returns a ``Found``: the prompt to draw
  (``*`` marks each position a found vector fills), the vectors, the objective before and after.
  The judge is the concept's catalog detector, never a model the attack differentiates through.

Hyperparameters are a dataclass whose defaults are the authors' budgets for Stable Diffusion;
attacks/defaults.py scales them per model family (the one place they differ). A probe that
cannot reach an edit says so in one line (``not_applicable``) instead of reporting 0%.

    from attacks.base import run_attack
    found = run_attack(pipe, "unlearndiff", concept, "a photo of a church", seed=0)
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from bench.core.errors import EraselabError

KINDS = ("prompt", "text", "embedding", "image")
FOUND_FILE, VECTORS_FILE = "found.json", "vectors.safetensors"


@dataclasses.dataclass
class EmptyConfig:
    """A probe without hyperparameters."""


class Probe:
    """Base class of every probe; subclasses set ``kind``, ``Config`` and ``prompts`` or ``attack``.

    ``name`` is given by the registry (attacks/__init__.py's ``TABLE``), never written in the class."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    kind: ClassVar[str] = "prompt"
    Config: ClassVar[type] = EmptyConfig
    white_box: ClassVar[bool] = False   # differentiates through the edited model's weights
    # uses the original model's text encoder (never the edited model): one search serves every arm
    needs_original_text_encoder: ClassVar[bool] = False
    # uses the unedited UNet and text encoder beside the edited model (P4D's target), per arm
    needs_original_model: ClassVar[bool] = False
    quick_overrides: ClassVar[dict] = {}  # what makes one attack take seconds in the test battery
    draws_images: ClassVar[bool] = False  # makes its images itself (``draw``), not from a prompt
    needs_concept_images: ClassVar[bool] = True  # ``draw`` starts from the concept's images
    needs_selector: ClassVar[bool] = False  # chooses among candidates with the evaluation CLIP
    # the probe whose images this one's lift is measured against, on the same arm and seeds
    # (a best-of-N probe against best-of-N plain sampling); "" = against the plain images
    compare_with: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        from attacks import ATTACKS
        ATTACKS.fulfil(cls)

    def not_applicable(self, method_cls) -> str | None:
        """Why this probe cannot reach edits of ``method_cls`` (one line), or None."""
        if self.white_box and outside_the_model(method_cls):
            return (f"{self.name} optimises against the edited weights; {method_cls.name} edits no "
                    f"weights (an inference-time filter the attack's objective does not contain)")
        return None

    def prompts(self, concept, catalog, n: int, seed: int) -> list[str]:
        """Prompt probes: up to ``n`` prompt texts for ``concept`` (deterministic in ``seed``)."""
        raise NotImplementedError

    def attack(self, ctx: "AttackContext") -> "Found":
        """Optimised attacks: optimise against ``ctx.pipe`` for ``ctx.base_prompt``."""
        raise NotImplementedError

    def draw(self, pipe, prompt: str, seeds: list, images: list, config, steps: int, guidance: float,
             clip=None) -> list:
        """Non-text probes: the probe's images, one per seed, from the concept ``images``; ``clip``
        is the evaluation CLIP (detectors.clip_backend) for probes that select (``needs_selector``)."""
        raise NotImplementedError


class SamplingProbe(Probe):
    """A non-text probe drawn with its own sampling loop (attacks/sampling.py): nothing to
    optimise, its finding is the procedure (``procedure``: what the record shows), and out of
    reach of inference-time methods, whose guidance is not in that loop."""

    kind = "image"
    draws_images = True

    def not_applicable(self, method_cls):
        if outside_the_model(method_cls):
            return (f"{self.name} samples the UNet directly; {method_cls.name}'s inference-time guidance "
                    f"is not in that loop")
        return None

    def procedure(self, config) -> dict:
        return {}

    def attack(self, ctx):
        return Found(prompt=ctx.base_prompt, extra=self.procedure(ctx.config))


def outside_the_model(method_cls) -> bool:
    """True for an inference-time method whose edit lives outside the UNet and text encoder
    while they run (guidance, per-call hooks); a ``persistent_hooks`` one (methods/base.py) is in
    them whenever its edit is loaded, so attacks on the model reach it."""
    return (method_cls is not None and getattr(method_cls, "inference_time", False)
            and not getattr(method_cls, "persistent_hooks", False))


@dataclasses.dataclass
class AttackContext:
    """Everything an optimised attack needs, plus the shared run-time services."""

    probe: str
    pipe: Any              # the edited diffusers pipeline (weights edited in place)
    concept: Any           # bench.catalog.Concept
    base_prompt: str       # the target prompt the attack starts from
    config: Any
    family: str
    seed: int
    images: list           # PIL images of the concept (the attack's target; never evaluation images)
    progress: bool = True
    original_text_encoder: Any = None  # the unedited text encoder (probes that need it)
    original_unet: Any = None          # the unedited UNet (needs_original_model)
    clip: Any = None                   # the evaluation CLIP (needs_selector)

    def __post_init__(self):
        import random

        import torch
        self.generator = torch.Generator("cpu").manual_seed(self.seed)
        self.rng = random.Random(f"{self.probe}:{self.concept.name}:{self.base_prompt}:{self.seed}")

    def progress_bar(self, total: int):
        from tqdm import tqdm
        return tqdm(total=total, desc=f"{self.probe} {self.concept.name}", disable=not self.progress,
                    file=sys.stderr, leave=False)

    def check_finite(self, loss, step: int, total: int) -> float:
        """The objective as a float; a NaN/inf one stops the attack with an error naming the step."""
        from methods.base import finite_value
        return finite_value(loss, f"{self.probe}: objective", step, total, self.config, "lower lr")


@dataclasses.dataclass
class Found:
    """What an optimised attack found: replayable from its folder by anyone."""

    prompt: str                  # the text to draw; each '*' is filled by the next vector
    vectors: Any = None          # torch tensor (k, d) of found embeddings, or None (plain text)
    objective_before: float = float("nan")   # the attack's own objective at its start, fixed batch
    objective_after: float = float("nan")    # ... and at its end, same batch
    steps: int = 0
    seconds: float = 0.0
    extra: dict = dataclasses.field(default_factory=dict)

    def save(self, folder: Path, record: dict) -> None:
        """``found.json`` (prompt, objective, record) and ``vectors.safetensors`` (if any), each
        written atomically, the vectors first: a folder with ``found.json`` is complete."""
        from bench.core.files import atomic_write, write_json
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.vectors is not None:
            from safetensors.torch import save_file
            tensors = {"vectors": self.vectors.detach().float().cpu().contiguous()}
            atomic_write(folder / VECTORS_FILE, lambda tmp: save_file(tensors, str(tmp)))
        write_json(folder / FOUND_FILE, {"prompt": self.prompt, "has_vectors": self.vectors is not None,
                                         "objective_before": self.objective_before,
                                         "objective_after": self.objective_after, "steps": self.steps,
                                         "seconds": round(self.seconds, 3), **self.extra, **record})

    @classmethod
    def load(cls, folder: Path) -> "Found":
        folder = Path(folder)
        try:
            data = json.loads((folder / FOUND_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise EraselabError(f"{folder / FOUND_FILE}: unreadable attack result ({exc})") from None
        vectors = None
        if data.get("has_vectors"):
            from safetensors.torch import load_file
            from detectors.base import read_safetensors
            from methods.delta import owned
            tensors = read_safetensors(folder / VECTORS_FILE, load_file)
            if "vectors" not in tensors:
                raise EraselabError(f"{folder / VECTORS_FILE}: no 'vectors' tensor in this attack result")
            vectors = owned(tensors)["vectors"]  # as the in-memory vectors compute, bit for bit
        return cls(prompt=data["prompt"], vectors=vectors, objective_before=data.get("objective_before", float("nan")),
                   objective_after=data.get("objective_after", float("nan")), steps=data.get("steps", 0),
                   seconds=data.get("seconds", 0.0))

    @staticmethod
    def is_saved(folder: Path) -> bool:
        return (Path(folder) / FOUND_FILE).is_file()


def get_probe(name: str) -> type[Probe]:
    from attacks import ATTACKS
    return ATTACKS.get(name)


def resolve_probe_config(probe_cls, family: str, overrides: dict | None = None):
    """Config = authors' budget < family budget (attacks/defaults.py) < overrides; an unknown key or
    an ill-typed value is a one-line error."""
    from attacks.defaults import family_budget
    from methods.config import resolve_config
    layers = [(f"budget for family {family!r}", family_budget(probe_cls.name, family)),
              ("overrides", dict(overrides or {}))]
    return resolve_config(probe_cls.name, probe_cls.Config, layers)


def run_attack(pipe, probe: str, concept, base_prompt: str, *, seed: int, overrides: dict | None = None,
               images: list | None = None, progress: bool = False, original_text_encoder=None,
               original_unet=None, clip=None, image_source=None) -> Found:
    """Run optimised attack ``probe`` against ``pipe`` (edited in place; restored unchanged) for
    one base prompt; ``images`` of the concept default to its catalog images under the attack's
    own seeds (``concept_images``; ``image_source`` stands in for the catalog); a probe that needs the original text encoder takes ``original_text_encoder``
    (default: ``pipe``'s own, when ``pipe`` is the unedited model), one that needs the original
    model also ``original_unet``, and one that selects ``clip`` (default: the evaluation CLIP,
    detectors.clip_backend.load_clip). Returns the Found, with its wall seconds."""
    import torch

    from methods.defaults import detect_family
    cls = get_probe(probe)
    if cls.kind == "prompt":
        raise EraselabError(f"{probe} is a prompt probe: it has prompts, not an attack to run")
    family = detect_family(pipe)
    config = resolve_probe_config(cls, family, overrides)
    if images is None and cls.white_box:
        images = concept_images(concept, getattr(config, "images", 4), seed, image_source)
    needs_te0 = cls.needs_original_text_encoder or cls.needs_original_model
    if needs_te0 and original_text_encoder is None:
        original_text_encoder = getattr(pipe, "pipe", pipe).text_encoder
    if cls.needs_original_model and original_unet is None:
        original_unet = getattr(pipe, "pipe", pipe).unet
    if cls.needs_selector and clip is None:
        from detectors.clip_backend import load_clip
        clip = load_clip()
    ctx = AttackContext(probe, pipe, concept, base_prompt, config, family, seed, images or [], progress,
                        original_text_encoder, original_unet, clip)
    requires = {n: p.requires_grad for n, p in _named_parameters(pipe)}
    t0 = time.perf_counter()
    try:
        for _, p in _named_parameters(pipe):
            p.requires_grad_(False)  # the attack changes its own variables, never the model
        found = cls().attack(ctx)
    finally:
        for n, p in _named_parameters(pipe):
            p.requires_grad_(requires[n])
    found.seconds = time.perf_counter() - t0
    from methods.config import config_to_dict
    found.extra = {**found.extra, "config": config_to_dict(config)}  # what it ran with, in found.json
    if found.vectors is not None and not torch.isfinite(found.vectors).all():
        raise EraselabError(f"{probe}: the found vectors are not finite; lower lr")
    return found


def original_parts(pipe, probe_classes) -> tuple:
    """Frozen copies of ``pipe``'s text encoder and UNet, each only if one of ``probe_classes``
    uses it (``needs_original_text_encoder``, ``needs_original_model``), taken before an edit is
    applied: (text encoder or None, UNet or None)."""
    import copy
    probes = list(probe_classes)
    te0 = unet0 = None
    if any(p.needs_original_text_encoder or p.needs_original_model for p in probes):
        te0 = copy.deepcopy(pipe.text_encoder).requires_grad_(False).eval()
    if any(p.needs_original_model for p in probes):
        unet0 = copy.deepcopy(pipe.unet).requires_grad_(False).eval()
    return te0, unet0


def concept_images(concept, n: int, seed: int, source=None) -> list:
    """The ``n`` images of ``concept`` an attack or probe sees: its catalog images under seeds
    apart from the erasure's few-shot ones; ``source(concept, n, seed)`` stands in for the catalog
    (the smoke run's seeded noise)."""
    image_seed = 7919 + int(seed)
    if source is not None:
        return source(concept, n, image_seed)
    from bench.fewshot import load_fewshot_images
    return load_fewshot_images(concept, n, seed=image_seed)


def _named_parameters(pipe):
    pipe = getattr(pipe, "pipe", pipe)
    for comp in ("unet", "text_encoder", "vae"):
        module = getattr(pipe, comp, None)
        if module is not None:
            for n, p in module.named_parameters():
                yield f"{comp}.{n}", p
