"""Planning a suite's ``robustness:`` section: probe prompt sets and optimised-attack jobs.

Pure Python apart from the probes' prompt lists (attacks/prompt_probes.py, no torch), called by
bench/runner/plan.py ``build_plan``. Everything it adds is an arm of the run like any other (rows
of results.parquet, aggregated by the one metrics engine), named by its ``variant`` label
("<arm> | probe <name>", "<arm> | attack <name>"; the original model's, the control, "probe
<name>") and placed by the columns of bench/core/schema.py ``ROBUSTNESS_COLUMNS``:

* a **prompt probe** adds its prompts (target prompt set, subject = the erased concept) to each
  arm's edit and to the original model, with the seeds every image of those prompts has;
* an **attack job** is addressed by hash(probe, version, budget table and overrides, the edit it
  attacks, the concept, the base prompt, the erasure seed); a probe that searches the original
  text encoder's space (ring-a-bell) has one job per concept, base prompt and seed, on the
  original model, whose prompt every arm is drawn with; its images are drawn from the found
  prompt or vectors (``Image.attack``, part of the image's address) with the seeds of the base
  prompt's plain target images, so that each attacked image has a plain twin of the same edit;
* a probe that cannot apply is recorded in ``Plan.not_applicable`` with its one-line reason.
"""

from __future__ import annotations

import dataclasses

from bench.core.ids import content_id, prompt_id
from bench.core.schema import ORIGINAL


@dataclasses.dataclass(frozen=True)
class AttackJob:
    """One optimised attack as the runner runs it: against ``edit``, from ``base_prompt``."""

    id: str
    probe: str
    kind: str                # "text" or "embedding"
    edit: str                # the attacked edit's id (the original model's for the control)
    arm: str                 # the arm's table name
    concept: str
    base_prompt: str
    seed: int
    overrides: dict          # the suite's budget overrides for this probe


def probe_label(arm_label: str, probe_cls) -> str:
    word = "attack" if probe_cls.kind in ("text", "embedding") else "probe"
    return f"{arm_label} | {word} {probe_cls.name}" if arm_label else f"{word} {probe_cls.name}"


def plan_robustness(suite, edit_for, image_for, rows, twins, groups, attacks, not_applicable) -> None:
    """Add the section's images, rows and attack jobs to the plan's tables."""
    from attacks import ATTACKS
    from attacks.defaults import BUDGETS
    from bench.runner.plan import Prompt, concept_prompts
    from bench.runner.resurgence_plan import arm_name
    from bench.runner.suite import MethodSpec
    from methods import METHODS

    rb = suite.robustness
    original = MethodSpec(ORIGINAL)
    probes = [ATTACKS.get(name) for name in rb.probes]
    for model in suite.models:
        for seed in suite.seeds:
            for concept_name in suite.concepts:
                concept = suite.catalog[concept_name]
                targets = concept_prompts(suite, concept_name).get("target", [])[:rb.base_prompts]
                orig_edit = edit_for(model, original, concept_name, seed)
                for arm in (original, *rb.arms):
                    edit = edit_for(model, arm, concept_name, seed)
                    method_cls = None if arm.name == ORIGINAL else METHODS.get(arm.name)
                    shown = "original" if arm.name == ORIGINAL else arm_name(arm)
                    for cls in probes:
                        probe = cls()
                        reason = probe.not_applicable(method_cls) or (
                            probe.not_applicable_concept(concept) if cls.kind == "prompt" else None)
                        if reason:
                            if seed == suite.seeds[0]:
                                not_applicable.append({"model": model.id, "arm": shown, "concept": concept_name,
                                                       "probe": cls.name, "kind": cls.kind, "reason": reason})
                            continue
                        label = probe_label(arm.label if arm.name != ORIGINAL else "", cls)
                        coords = {"probe": cls.name, "probe_kind": cls.kind, "probe_arm": shown}
                        if cls.kind == "prompt":
                            texts = probe.prompts(concept, suite.catalog, rb.prompts, 0)
                            prompts = [Prompt("target", t, concept_name, prompt_id(t), rb.samples) for t in texts]
                            _add_rows(model, arm, label, edit, orig_edit, concept, seed, prompts, coords,
                                      image_for, rows, twins, groups)
                            continue
                        budget = {"table": BUDGETS.get(cls.name, {}), "overrides": rb.budgets.get(cls.name, {})}
                        # a search in the original text encoder's space serves every arm: one job
                        target = orig_edit if cls.needs_original_text_encoder else edit
                        for p in targets:
                            job_id = content_id({"probe": cls.name, "version": cls.version, "budget": budget,
                                                 "edit": target.id, "concept": concept.identity(),
                                                 "base_prompt": p.text, "seed": seed})
                            attacks.setdefault(job_id, AttackJob(
                                job_id, cls.name, cls.kind, target.id,
                                "every arm" if cls.needs_original_text_encoder else shown,
                                concept_name, p.text, seed, dict(rb.budgets.get(cls.name, {}))))
                            # every sample the base prompt's plain images have: each attacked image pairs
                            _add_rows(model, arm, label, edit, orig_edit, concept, seed, [p],
                                      {**coords, "attack_job": job_id}, image_for, rows, twins, groups,
                                      attack=job_id)


def _add_rows(model, arm, label, edit, orig_edit, concept, seed, prompts, coords, image_for, rows, twins,
              groups, attack: str = "") -> None:
    """Rows of ``edit``'s images of ``prompts``; each image's twin is the original model's plain
    image of the same prompt and seed (an attacked image's: its base prompt's)."""
    g_edit, g_orig = groups.setdefault((model.id, arm.name, label, concept.name, "target"), ([], []))
    for p in prompts:
        for sample in range(p.samples):
            im = image_for(edit, p, sample, seed, attack=attack)
            twin = image_for(orig_edit, p, sample, seed)
            if im.id != twin.id:
                twins[im.id] = twin.id
            g_edit.append(im.id)
            g_orig.append(twin.id)
            rows.append({"model": model.id, "method": arm.name, "variant": label, "concept": concept.name,
                         "concept_type": concept.type, "prompt_set": "target", "prompt_id": p.id,
                         "prompt": p.text, "subject": p.subject, "sample": sample, "suite_seed": seed,
                         "seed": im.seed, "image_path": im.path, "edit_id": edit.id, "image_id": im.id,
                         **coords})
