"""Planning a suite's ``resurgence:`` section: fine-tuning chains, drift settings, sequences.

Pure Python, called by bench/runner/plan.py ``build_plan``; everything it adds is an arm of the
run like any other (rows of results.parquet, aggregated by the one metrics engine), named by its
``variant`` label and placed by the columns of bench/core/schema.py ``RESURGENCE_COLUMNS``:

* a **fine-tuning checkpoint** is an edit addressed by hash(its start edit, the chain, the
  recipe table and overrides, the data, the step). Step 0 is the start edit itself (the erased
  model, or the original model for the control chain); its rows are labelled ``<chain> @0``.
  The control chain is the original model fine-tuned on the same data with the same seed.
* a **drift setting** draws an arm's images (and the original's, the control) with other sampler
  values: a key of ``Plan.samplers``, part of each image's address.
* a **sequence** erases its concepts one after another with an arm's method, each edit on top of
  the one before; after each erasure every concept of the sequence is judged on its prompts.

Every row's twin is the original model's image of the same prompt, sample and seed under the
suite's sampler; comparisons with the control (the original fine-tuned alike, or drawn with the
same drift setting) are made in the report with bench.metrics.contrast.
"""

from __future__ import annotations

import dataclasses

from bench.core.ids import content_id
from bench.core.schema import ORIGINAL

@dataclasses.dataclass(frozen=True)
class FinetuneChain:
    """One chain as the runner trains it: from ``parent``, checkpoints by step."""

    id: str
    parent: str               # the edit id it starts from (the original model's for the control)
    chain: object             # bench.runner.resurgence.Chain
    concept: str              # whose data (benign data excludes it; relearning is made of it)
    seed: int
    source: str | None        # a data path, or None (rendered / catalog images)
    n: int                    # image-caption pairs it trains on
    checkpoints: tuple        # ((step, edit id), ...) for steps > 0


def arm_name(arm) -> str:
    """How the study's tables name an arm: its label, else its method."""
    return arm.label or arm.name


def plan_resurgence(suite, fingerprints, edit_for, image_for, samplers, edits, rows, twins, groups) -> dict:
    """Add the section's edits, images and rows to the plan's tables; returns its chains."""
    from bench.finetune import RECIPE_DEFAULTS, VERSION
    from bench.runner.plan import Edit, concept_prompts
    from bench.runner.suite import MethodSpec

    rs = suite.resurgence
    study_suite = dataclasses.replace(suite, prompt_sets=rs.prompt_sets or suite.prompt_sets)
    prompts_of = {}
    original = MethodSpec(ORIGINAL)

    def prompts(concept):
        if concept not in prompts_of:
            prompts_of[concept] = concept_prompts(study_suite, concept)
        return prompts_of[concept]

    def add_rows(model, method, edit, orig_edit, concept, seed, label, coords, sampler_key="", sets=None):
        ctype = suite.catalog[concept].type
        for set_name, ps in prompts(concept).items():
            if sets is not None and set_name not in sets:
                continue
            g_edit, g_orig = groups.setdefault((model.id, method, label, concept, set_name), ([], []))
            for p in ps:
                for sample in range(p.samples):
                    im = image_for(edit, p, sample, seed, sampler_key)
                    twin = image_for(orig_edit, p, sample, seed)
                    if im.id != twin.id:
                        twins[im.id] = twin.id
                    g_edit.append(im.id)
                    g_orig.append(twin.id)
                    rows.append({"model": model.id, "method": method, "variant": label,
                                 "concept": concept, "concept_type": ctype, "prompt_set": set_name,
                                 "prompt_id": p.id, "prompt": p.text, "subject": p.subject,
                                 "sample": sample, "suite_seed": seed, "seed": im.seed,
                                 "image_path": im.path, "edit_id": edit.id, "image_id": im.id,
                                 **coords})

    def prefixed(arm, text):
        return f"{arm.label} | {text}" if arm.label else text

    recipe_address = {"defaults": RECIPE_DEFAULTS, "overrides": rs.recipe, "version": VERSION}
    chains: dict = {}
    for label, setting in rs.drift:
        samplers[f"drift:{label}"] = {**suite.sampler, **setting}
    for model in suite.models:
        for seed in suite.seeds:
            for concept in suite.concepts:
                orig_edit = edit_for(model, original, concept, seed)
                for arm in (original, *rs.arms):
                    start = edit_for(model, arm, concept, seed)
                    for chain in rs.chains:
                        kind = "relearn" if chain.data == "relearn" else "finetune"
                        data = {"kind": chain.data, "n": chain.shots if chain.data == "relearn" else rs.images,
                                "source": rs.sources.get(chain.data)}
                        payload = {"finetune_of": start.id, "concept": concept, "seed": seed,
                                   "chain": dataclasses.asdict(chain), "data": data, "recipe": recipe_address}
                        chain_id = content_id(payload)
                        checkpoints = []
                        for step in rs.steps:
                            if step == 0:
                                edit = start
                            else:
                                edit = Edit(content_id({**payload, "step": step}), model.id, arm.name,
                                            arm.variant, dict(start.overrides), concept, seed,
                                            parent=start.id, finetune=(chain_id, step))
                                edits.setdefault(edit.id, edit)
                                checkpoints.append((step, edit.id))
                            coords = {"resurgence": kind, "base_arm": arm_name(arm), "chain": chain.label,
                                      "step": step, "setting": "", "ft_data": chain.data,
                                      "ft_module": chain.module, "ft_mode": chain.mode, "ft_shots": chain.shots}
                            between = step not in (rs.steps[0], rs.steps[-1])
                            add_rows(model, arm.name, edit, orig_edit, concept, seed,
                                     prefixed(arm, f"{chain.label} @{step}"), coords,
                                     sets=rs.intermediate_sets if between else None)
                        chains[chain_id] = FinetuneChain(chain_id, start.id, chain, concept, seed,
                                                         data["source"], data["n"], tuple(checkpoints))
                    for label, _ in rs.drift:
                        coords = {"resurgence": "drift", "base_arm": arm_name(arm), "chain": "", "step": None,
                                  "setting": label}
                        add_rows(model, arm.name, start, orig_edit, concept, seed,
                                 prefixed(arm, f"drift {label}"), coords, f"drift:{label}")
            if rs.sequential:
                _plan_sequences(suite, rs, model, seed, original, edit_for, add_rows, prefixed, edits)
    return chains


def _plan_sequences(suite, rs, model, seed, original, edit_for, add_rows, prefixed, edits) -> None:
    from bench.runner.plan import Edit

    order = rs.sequential
    for arm in rs.arms:
        previous = None
        for t, concept in enumerate(order, start=1):
            single = edit_for(model, arm, concept, seed, register=previous is None)
            if previous is None:
                edit = single
            else:
                edit = Edit(content_id({"after": previous.id, "then": single.id}), model.id, arm.name,
                            arm.variant, dict(single.overrides), concept, seed, parent=previous.id)
                edits.setdefault(edit.id, edit)
            erased = " > ".join(order[:t])
            for judged in order:
                orig_edit = edit_for(model, original, judged, seed)
                coords = {"resurgence": "sequential", "base_arm": arm_name(arm), "chain": erased, "step": t,
                          "setting": ""}
                add_rows(model, arm.name, edit, orig_edit, judged, seed,
                         prefixed(arm, f"sequence {t}: {erased}"), coords)
            previous = edit
