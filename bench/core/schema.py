"""The schema of a run's tables: per-image rows (results.parquet) and aggregates.

Imported by the runner (which writes these tables) and by the report generator (which reads
them); change a name here and both follow. Nothing here imports pandas or torch.

results.parquet -- one row per (model, method, variant, concept, prompt set, prompt, sample, suite
seed). Images are shared where the work is the same: the ``original`` model's image of a prompt is
one file, referenced by every concept whose prompt sets contain that prompt.

| column              | type        | meaning                                                          |
|---------------------|-------------|------------------------------------------------------------------|
| run                 | str         | run name (the run folder's name)                                 |
| model               | str         | model id from the suite (``miniworld``, ``sd14``, ...)           |
| method              | str         | erasure method (methods.METHODS name)                            |
| variant             | str         | the suite's variant for the method; "" = the method's default    |
| concept             | str         | the erased concept (catalog name)                                |
| concept_type        | str         | object / instance / style / logo                                 |
| prompt_set          | str         | target / related / unrelated                                     |
| prompt_id           | str         | stable id of the prompt text (same across methods and concepts)  |
| prompt              | str         | the prompt text                                                  |
| subject             | str or null | the catalog concept the prompt names (null: a general prompt)    |
| sample              | int         | sample index within the prompt                                   |
| suite_seed          | int         | the suite seed (erase seed and base of the image seed)           |
| seed                | int         | the image's seed: bench.core.ids.image_seed(prompt_id, sample, suite_seed) |
| image_path          | str         | PNG path relative to the run folder                              |
| edit_id             | str         | content address of the edit (method, config, concept, base model, seed) |
| image_id            | str         | content address of the image (edit, prompt, sample, seed, sampler) |
| detector            | str or null | the scorer that judged ``detected`` (the subject's catalog detector) |
| detected            | bool/null   | the subject's detector sees it (null: no subject / not applicable) |
| detected_score      | float/null  | the detector's confidence in the subject (``concept_score``)     |
| detector_threshold  | float/null  | the detector's operating threshold on it (null: its top label decides) |
| judge               | str or null | the subject's second, independent judge (catalog ``judge``)      |
| judge_detected      | bool/null   | the second judge sees the subject                                |
| judge_score, judge_threshold | float/null | the second judge's confidence and operating threshold   |
| clip_score          | float       | cosine(eval CLIP image, prompt text)                             |
| mapped_to, mapped_p | str, float  | top zero-shot catalog label and its probability (``mapping``)    |
| mapping_dist        | str (JSON)  | the whole zero-shot distribution                                 |
| mapping_space       | str         | the label space it is over: "styles" for a style, else "objects" |
| clip_image_cosine   | float       | CLIP image cosine to the same-seed original twin (NaN for ``original`` rows) |
| <scorer>.version    | str         | version of each scorer that produced a column (and .backend)     |

Other scorer columns (det_labels, imagenet_top1, style_pred, ...) pass through; list and dict
values are stored as JSON strings so every part has the same column types.

aggregates.parquet / aggregates.csv -- one row per (scope, model, method, variant, concept, prompt
set, metric), derived from results.parquet, the KID parts and the edit records by
``bench.metrics.aggregate``; its columns are ``bench.metrics.AGGREGATE_COLUMNS``.

manifest.json -- ``bench.manifest.RunManifest``.
"""

from __future__ import annotations

ROW_KEY = ("model", "method", "variant", "concept", "prompt_set", "prompt_id", "sample", "suite_seed")
GROUP_KEY = ("model", "method", "variant", "concept", "prompt_set")

ROW_COLUMNS = ("run", "model", "method", "variant", "concept", "concept_type", "prompt_set",
               "prompt_id", "prompt", "subject", "sample", "suite_seed", "seed", "image_path",
               "edit_id", "image_id", "detector", "detected", "detected_score", "detector_threshold",
               "judge", "judge_detected", "judge_score", "judge_threshold", "clip_score", "mapped_to",
               "mapped_p", "mapping_dist", "mapping_space", "clip_image_cosine")

# A concept's catalog judges (bench/catalog.py): its detector, then its second, independent judge;
# per role the columns of its name, verdict, confidence in the subject and operating threshold.
JUDGE_ROLES = ("detector", "judge")
JUDGE_COLUMNS = dict(zip(JUDGE_ROLES, (("detector", "detected", "detected_score", "detector_threshold"),
                                       ("judge", "judge_detected", "judge_score", "judge_threshold"))))

# The columns a resurgence study's rows add (bench/runner/resurgence_plan.py): its kind
# (finetune, relearn, drift, sequential), the arm it started from, the fine-tuning chain's label
# (or the sequence so far), the step (or the position in the sequence), the drift setting, and a
# chain's coordinates: its data (unrelated, related, relearn), module, mode (lora, full), shots.
RESURGENCE_COLUMNS = ("resurgence", "base_arm", "chain", "step", "setting", "ft_data", "ft_module",
                      "ft_mode", "ft_shots")

# The columns a robustness study's rows add (bench/runner/robustness_plan.py): the probe, its
# kind (prompt, text, embedding), the arm it probes ("original" for the control), the attack job
# an attacked image was drawn from, and the prompt it was drawn from ('*' marks a found vector).
ROBUSTNESS_COLUMNS = ("probe", "probe_kind", "probe_arm", "attack_job", "attack_prompt")

PROMPT_SETS = ("target", "related", "unrelated")
# The method name of the unedited base model in every table: the reference each edit is read
# against (it is planned as "no edit", not registered as a method).
ORIGINAL = "original"


def is_reference(method, variant) -> bool:
    """Whether a row is the plain original model's: the twin of every other row. The original
    fine-tuned or drawn otherwise (a resurgence control) has a variant and is not."""
    return method == ORIGINAL and (variant is None or variant == "" or variant != variant)
