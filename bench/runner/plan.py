"""The work plan of a run: content-addressed edits, images and batches, and their shard split.

Pure Python (no torch): the same suite and inputs always give the same plan, in any process.

* An **edit** is addressed by hash(method, method version, variant, overrides, the method's
  per-family defaults, concept, catalog, base-model fingerprint, seed). The ``original`` model is "no edit" (``Edit.is_base``): one per
  base model (no concept, no seed), never erased or saved, so its image of a prompt is generated
  once and is the twin of every edited image of that prompt, sample and seed.
* An **image** is addressed by hash(edit, prompt id, prompt, sample, image seed, sampler config);
  its seed is ``bench.core.ids.image_seed(prompt_id, sample, suite_seed)``, the same for every
  method, concept and shard. The batch size is NOT in the address: each image has its own
  generator, so an image is the same at any batch size up to float rounding: identical on the
  tiny test pipeline (tests/test_runner.py), at most 1 of 255 levels apart on the shipped mini
  world on the CPU (benchmarks/results/batch_invariance.json: batch 16 vs 1 and 5). Batched
  kernels round differently, on GPUs too; keep the batch size fixed for bit-identical runs.
* A **batch** is a fixed chunk of one edit's images in canonical order (sorted by suite seed,
  prompt id, sample), so an image is always generated in the same batch composition: resumed,
  sharded and uninterrupted runs give bit-identical images.
* **Shards** get whole edits (greedy by image count, deterministic), so an edit is erased by one
  process only.
* A suite's ``resurgence:`` section adds its own edits and images (bench/runner/resurgence_plan.py):
  fine-tuning checkpoints (``Edit.finetune``), edits erased on top of another (``Edit.parent``)
  and images drawn with another sampler (``Image.sampler``, a key of ``Plan.samplers``).
* A suite's ``robustness:`` section adds probe prompts and attack jobs
  (bench/runner/robustness_plan.py): images drawn from what an attack found (``Image.attack``, a
  key of ``Plan.attacks``), batched per job.
"""

from __future__ import annotations

import dataclasses
import random

from bench.core.ids import content_id, image_seed, prompt_id
from bench.core.schema import ORIGINAL

# The base model is planned as "no edit"; this stands in its content address where an edit has
# its method's version, so that the base's images keep the addresses they have always had.
BASE_EDIT_VERSION = "1"



@dataclasses.dataclass(frozen=True)
class Prompt:
    set: str
    text: str
    subject: str | None  # the catalog concept the prompt names (None: a general prompt)
    id: str
    samples: int


def _round_robin(lists: list[list]) -> list:
    out, i = [], 0
    while any(i < len(l) for l in lists):
        out.extend(l[i] for l in lists if i < len(l))
        i += 1
    return out


def concept_prompts(suite, concept_name: str) -> dict[str, list[Prompt]]:
    """The prompt sets of one erased concept (docs/protocol.md, "Prompt sets")."""
    catalog = suite.catalog
    concept = catalog[concept_name]
    out: dict[str, list[Prompt]] = {}
    for set_name, spec in suite.prompt_sets.items():
        def fill(c, templates=None):
            return [(t.replace("{}", c.name), c.name) for t in (templates or c.templates)] + \
                   [(e.replace("{}", c.name), c.name) for e in spec.extra]
        if set_name == "target":
            pool = fill(concept)
        elif set_name == "related":
            names = [n for n in ([concept.parent] if concept.parent else []) + list(concept.related)
                     + [c.name for c in catalog.children(concept.name)] if n != concept.name]
            names = list(dict.fromkeys(names))
            pool = _round_robin([fill(catalog[n]) for n in names])
        else:  # unrelated: other concepts (a seeded, concept-specific order), then general prompts
            near = {concept.name, concept.parent, *concept.related,
                    *(c.name for c in catalog.children(concept.name))}
            others = sorted(n for n in catalog.concepts if n not in near)
            random.Random(f"unrelated:{concept.name}").shuffle(others)
            pool = _round_robin([fill(catalog[n]) for n in others])
            pool += [(g, None) for g in suite.general_prompts]
        pool = list(dict.fromkeys(pool))[:spec.prompts]
        if not pool:
            continue  # e.g. a concept with no parent or related concepts has no related set
        out[set_name] = [Prompt(set_name, text, subject, prompt_id(text), spec.samples)
                         for text, subject in pool]
    return out


def images_per_group(suite) -> dict[tuple[str, str], int]:
    """Images per (concept, prompt set) per method: prompts x samples x seeds."""
    out = {}
    for c in suite.concepts:
        for set_name, prompts in concept_prompts(suite, c).items():
            out[(c, set_name)] = sum(p.samples for p in prompts) * len(suite.seeds)
    return out


@dataclasses.dataclass(frozen=True)
class Edit:
    id: str
    model: str               # model id
    method: str
    variant: str | None
    overrides: dict
    concept: str | None      # None for the original model
    seed: int | None
    source: str | None = None  # a transfer: the edit (made on another model) plugged in here
    parent: str | None = None  # a sequence: the edit this one erases on top of
    finetune: tuple | None = None  # a resurgence checkpoint: (chain id, step); parent = its start

    @property
    def is_base(self) -> bool:
        """The unedited base model: nothing to erase, its images are every edit's twins."""
        return self.method == ORIGINAL and self.finetune is None


@dataclasses.dataclass(frozen=True)
class Image:
    id: str
    edit_id: str
    prompt_id: str
    prompt: str
    subject: str | None
    sample: int
    suite_seed: int
    seed: int
    sampler: str = ""  # a key of Plan.samplers ("" = the suite's sampler)
    attack: str = ""   # an attack job id: drawn from what that attack found ("" = from the prompt)

    @property
    def path(self) -> str:
        return f"images/{self.edit_id}/{self.id}.png"


@dataclasses.dataclass(frozen=True)
class Batch:
    id: str
    edit_id: str
    images: tuple  # of Image
    sampler: str = ""  # every image of a batch is drawn with one sampler
    attack: str = ""   # ... and from one attack job's findings (or none)


@dataclasses.dataclass
class Plan:
    edits: dict          # edit id -> Edit (original edits included even if not listed)
    images: dict         # image id -> Image
    batches: list        # of Batch, in canonical order
    rows: list           # dicts: the row metadata of results.parquet (no scores)
    twins: dict          # edited image id -> original image id
    groups: dict         # (model, method, variant, concept, set) -> (edited ids, original ids)
    chains: dict = dataclasses.field(default_factory=dict)    # chain id -> FinetuneChain
    samplers: dict = dataclasses.field(default_factory=dict)  # key -> sampler mapping ("" = the suite's)
    attacks: dict = dataclasses.field(default_factory=dict)   # job id -> robustness_plan.AttackJob
    not_applicable: list = dataclasses.field(default_factory=list)  # probes that cannot apply, with why

    @property
    def erasures(self) -> int:
        """How many edits erase something (the base model's "no edit" is not one)."""
        return sum(not e.is_base for e in self.edits.values())

    def shard_edits(self, index: int, count: int) -> set[str]:
        """The edit ids of shard ``index`` of ``count``: greedy by image count, deterministic."""
        sizes = {e: 0 for e in self.edits}
        for b in self.batches:
            sizes[b.edit_id] += len(b.images)
        load = [0] * count
        mine = set()
        for edit_id in sorted(sizes, key=lambda e: (-sizes[e], e)):
            k = min(range(count), key=lambda i: (load[i], i))
            load[k] += sizes[edit_id]
            if k == index:
                mine.add(edit_id)
        return mine


def sampler_address(sampler: dict) -> dict:
    """What of a sampler is part of an image's address (the batch size is not: see above)."""
    out = {k: sampler[k] for k in ("scheduler", "steps", "guidance", "resolution")}
    if sampler.get("precision", "fp32") != "fp32":
        # fp32 leaves the key out: its addresses equal those of a suite that never names precision
        out["precision"] = sampler["precision"]
    return out


def build_plan(suite, fingerprints: dict[str, str], method_versions: dict[str, str],
               extra_overrides: dict[str, dict] | None = None,
               method_defaults: dict[str, dict] | None = None) -> Plan:
    """The whole grid. ``fingerprints``: model id -> base-model fingerprint; ``method_versions``:
    method -> its class ``version``; ``extra_overrides``: method -> overrides added (--smoke);
    ``method_defaults``: method -> its per-family defaults (methods/defaults.py), part of an
    edit's address so that re-tuned defaults erase again."""

    extra_overrides = extra_overrides or {}
    method_defaults = method_defaults or {}
    edits: dict[str, Edit] = {}
    images: dict[str, Image] = {}
    rows: list[dict] = []
    twins: dict[str, str] = {}
    groups: dict[tuple, tuple[list, list]] = {}
    prompts_of = {c: concept_prompts(suite, c) for c in suite.concepts}

    def edit_for(model, method, concept, seed, register: bool = True) -> Edit:
        overrides = {**dict(method.overrides), **extra_overrides.get(method.name, {})}
        is_orig = method.name == ORIGINAL
        version = BASE_EDIT_VERSION if is_orig else method_versions[method.name]
        payload = {"model": fingerprints[model.id], "method": method.name,
                   "method_version": version, "variant": method.variant,
                   "overrides": overrides, "catalog": suite.catalog.name,
                   "concept": None if is_orig else suite.catalog[concept].identity(),
                   "seed": None if is_orig else seed}
        if any(method_defaults.get(method.name, {}).values()):  # no defaults: the address it always had
            payload["family_defaults"] = method_defaults[method.name]
        e = Edit(content_id(payload), model.id, method.name, method.variant, overrides,
                 None if is_orig else concept, None if is_orig else seed)
        if register:
            edits.setdefault(e.id, e)
        return e

    samplers = {"": dict(suite.sampler)}  # key -> the sampler its images are drawn with

    def image_for(edit: Edit, p: Prompt, sample: int, suite_seed: int, sampler_key: str = "",
                  attack: str = "") -> Image:
        seed = image_seed(p.id, sample, suite_seed)
        address = {"edit": edit.id, "prompt_id": p.id, "prompt": p.text, "sample": sample,
                   "seed": seed, "sampler": sampler_address(samplers[sampler_key])}
        if attack:
            address["attack"] = attack
        iid = content_id(address)
        im = Image(iid, edit.id, p.id, p.text, p.subject, sample, suite_seed, seed, sampler_key, attack)
        images.setdefault(iid, im)
        return im

    def transfer_for(model, method, concept, seed) -> Edit:
        """The edit of ``method`` made on its ``transfer_from`` model, plugged into ``model``."""
        source_model = next(m for m in suite.models if m.id == method.transfer_from)
        source = edit_for(source_model, dataclasses.replace(method, transfer_from=None), concept, seed)
        e = Edit(content_id({"transfer_of": source.id, "model": fingerprints[model.id]}), model.id,
                 method.name, method.variant, dict(source.overrides), concept, seed, source=source.id)
        edits.setdefault(e.id, e)
        return e

    from bench.runner.suite import MethodSpec
    original = MethodSpec(ORIGINAL)
    listed_original = any(m.name == ORIGINAL for m in suite.methods)
    for model in suite.models:
        for seed in suite.seeds:
            for concept in suite.concepts:
                ctype = suite.catalog[concept].type
                orig_edit = edit_for(model, original, concept, seed)
                for method in suite.methods:
                    if method.transfer_from == model.id:
                        continue  # a transfer arm draws on the models it is plugged into
                    edit = (transfer_for if method.transfer_from else edit_for)(model, method, concept, seed)
                    for set_name, prompts in prompts_of[concept].items():
                        key = (model.id, method.name, method.label, concept, set_name)
                        g_edit, g_orig = groups.setdefault(key, ([], []))
                        for p in prompts:
                            for sample in range(p.samples):
                                im = image_for(edit, p, sample, seed)
                                twin = image_for(orig_edit, p, sample, seed)
                                if edit.id != orig_edit.id:
                                    twins[im.id] = twin.id
                                g_edit.append(im.id)
                                g_orig.append(twin.id)
                                rows.append({"model": model.id, "method": method.name,
                                             "variant": method.label, "concept": concept,
                                             "concept_type": ctype, "prompt_set": set_name,
                                             "prompt_id": p.id, "prompt": p.text,
                                             "subject": p.subject, "sample": sample,
                                             "suite_seed": seed, "seed": im.seed,
                                             "image_path": im.path, "edit_id": edit.id,
                                             "image_id": im.id})
                if not listed_original:
                    # the twins still need their images: add them to the original edit's work
                    for set_name, prompts in prompts_of[concept].items():
                        for p in prompts:
                            for sample in range(p.samples):
                                image_for(orig_edit, p, sample, seed)

    chains: dict = {}
    if suite.resurgence is not None:
        from bench.runner.resurgence_plan import plan_resurgence
        chains = plan_resurgence(suite, fingerprints, edit_for, image_for, samplers, edits, rows,
                                 twins, groups)

    attacks: dict = {}
    not_applicable: list = []
    if suite.robustness is not None:
        from bench.runner.robustness_plan import plan_robustness
        plan_robustness(suite, edit_for, image_for, rows, twins, groups, attacks, not_applicable)

    batch_size = suite.sampler["batch_size"]
    by_edit: dict[tuple, list[Image]] = {}
    for im in images.values():
        by_edit.setdefault((im.edit_id, im.sampler, im.attack), []).append(im)
    batches = []
    for edit_id, sampler_key, attack in sorted(by_edit):
        ims = sorted(by_edit[(edit_id, sampler_key, attack)], key=lambda i: (i.suite_seed, i.prompt_id, i.sample))
        for start in range(0, len(ims), batch_size):
            chunk = tuple(ims[start:start + batch_size])
            payload = {"edit": edit_id, "images": [i.id for i in chunk]}
            if sampler_key:
                payload["sampler"] = sampler_key
            if attack:
                payload["attack"] = attack
            batches.append(Batch(content_id(payload), edit_id, chunk, sampler_key, attack))
    return Plan(edits=edits, images=images, batches=batches, rows=rows, twins=twins, groups=groups,
                chains=chains, samplers=samplers, attacks=attacks, not_applicable=not_applicable)
