"""Suite schema, validation and the work plan (no model work; a few seconds).

    python -m pytest tests/test_suite_schema.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.errors import ValidationError
from bench.core.paths import SUITE_DIR

SHIPPED = sorted(p.stem for p in SUITE_DIR.glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suites_validate(name):
    from bench.commands.validate import problems_of
    assert problems_of(SUITE_DIR / f"{name}.yaml") == []


def test_shipped_suites_meet_the_spec():
    from bench.runner.plan import images_per_group
    from bench.suite import load_suite
    default = load_suite("mini-default")
    methods = {m.name for m in default.methods}
    assert {"original", "fewshot-te"} <= methods and len(methods - {"fewshot-te", "original"}) >= 4
    types = {default.catalog[c].type for c in default.concepts}
    assert {"instance", "style", "object"} <= types
    assert not default.smoke_sized and len(default.seeds) >= 2  # the main job is reportable
    sizes = images_per_group(default)
    assert min(n for (_, ps), n in sizes.items() if ps != "related") >= 64
    assert min(n for (_, ps), n in sizes.items() if ps == "related") >= 32
    full = load_suite("mini-full")
    from methods import METHODS
    assert {m.name for m in full.methods} - {"original"} == set(METHODS.names())
    assert set(full.concepts) == set(full.catalog.concepts) and len(full.seeds) >= 2
    assert min(images_per_group(full).values()) >= 64
    paper = load_suite("paper-sd14")
    assert paper.models[0].path == "CompVis/stable-diffusion-v1-4" and paper.catalog.name == "paper"
    assert paper.sampler == {"scheduler": "pndm", "steps": 50, "guidance": 7.5, "resolution": 512,
                             "batch_size": 4, "precision": "fp32"}
    assert paper.prompt_sets["target"].samples == 4
    assert paper.scorer_options["clip-score"] == {"clip_model": "ViT-L-14", "clip_pretrained": "openai"}
    assert min(images_per_group(paper).values()) >= 64


BAD = """
suite: bad
catalog: miniworld
smoke_sized: true
models: [{id: m, path: ./no/such/folder}]
methods: [{name: esdx}, {name: uce, overrides: {lamb: 1}}, {name: sld, variant: extreme}]
concepts: [snoopy, snoopie]
prompt_sets: {target: {prompts: 1, samples: 1}, relatd: {prompts: 1, samples: 1}}
sampler: {steps: 0, guidence: 7, precision: fp16}
scorers: [clip-scor]
seeds: [0]
"""


def test_bad_suite_lists_every_problem_one_line_each(tmp_path):
    from bench.suite import validate_suite_file
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    problems = validate_suite_file(path)
    text = "\n".join(problems)
    for needle in ["'models[0].path'", "model folder not found", "'methods[0].name'", "'esd-x'",
                   "'methods[1]'", "lamb", "'methods[2]'", "extreme", "'concepts[1]'", "snoopie",
                   "'prompt_sets.relatd'", "'related'", "'sampler.steps'", "'sampler.guidence'",
                   "'guidance'", "'sampler.precision'", "fp32, bf16, auto", "'scorers[0]'", "'clip-score'"]:
        assert needle in text, needle
    assert all(p.startswith(str(path)) and "\n" not in p for p in problems)


def test_model_folder_without_model_index_is_rejected(tmp_path):
    from bench.suite import validate_suite_file
    (tmp_path / "model").mkdir()
    path = tmp_path / "s.yaml"
    path.write_text(BAD.replace("./no/such/folder", "./model"))
    assert any("no model_index.json" in p for p in validate_suite_file(path))


def test_size_rule_and_include(tmp_path):
    from bench.suite import load_suite
    path = tmp_path / "v.yaml"
    # one seed is below the reporting size: the suite must declare itself smoke-sized
    path.write_text(f"include: {SUITE_DIR / 'mini-default.yaml'}\nsuite: v\nseeds: [3]\n")
    with pytest.raises(ValidationError, match="smoke_sized"):
        load_suite(path)
    path.write_text(f"include: {SUITE_DIR / 'mini-default.yaml'}\nsuite: v\nseeds: [3]\nsmoke_sized: true\n")
    suite = load_suite(path)
    assert suite.name == "v" and suite.seeds == (3,) and suite.concepts == load_suite("mini-default").concepts


def test_validate_command_reports_suite_problems(tmp_path, capsys):
    from bench.cli import main
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    assert main(["validate", str(path)]) == 1
    assert "'methods[0].name'" in capsys.readouterr().err


# -- plan ------------------------------------------------------------------------------------
def _plan(text: str, tmp_path):
    from bench.runner.plan import build_plan
    from bench.suite import load_suite
    path = tmp_path / "p.yaml"
    path.write_text(text)
    suite = load_suite(path)
    versions = {m: "1" for m in ["original", "uce", "fewshot-te", "negative-prompt"]}
    return suite, build_plan(suite, {"m": "fp"}, versions)


PLAN = """
suite: p
catalog: miniworld
smoke_sized: true
models: [{id: m, path: miniworld}]
methods: [original, uce, fewshot-te]
concepts: [snoopy, church]
prompt_sets: {target: {prompts: 2, samples: 2}, related: {prompts: 2, samples: 2}, unrelated: {prompts: 2, samples: 1}}
sampler: {steps: 5, batch_size: 3}
seeds: [0, 1]
"""


def test_plan_seeds_twins_and_addresses(tmp_path):
    from bench.core.ids import image_seed
    suite, plan = _plan(PLAN, tmp_path)
    # rows: methods x concepts x seeds x (2x2 + 2x2 + 2x1)
    assert len(plan.rows) == 3 * 2 * 2 * 10
    originals = {e.id for e in plan.edits.values() if e.method == "original"}
    assert len(originals) == 1  # one original model: its images are shared by every concept
    for row in plan.rows:
        assert row["seed"] == image_seed(row["prompt_id"], row["sample"], row["suite_seed"])
        if row["method"] != "original":
            twin = plan.images[plan.twins[row["image_id"]]]
            assert twin.edit_id in originals and twin.seed == row["seed"] and twin.prompt == row["prompt"]
    # same seed for the same (prompt, sample, seed) across methods
    seeds = {}
    for row in plan.rows:
        seeds.setdefault((row["prompt_id"], row["sample"], row["suite_seed"]), set()).add(row["seed"])
    assert all(len(v) == 1 for v in seeds.values())
    _, again = _plan(PLAN, tmp_path)
    assert [b.id for b in again.batches] == [b.id for b in plan.batches]
    _, other = _plan(PLAN.replace("steps: 5", "steps: 6"), tmp_path)
    assert set(other.images).isdisjoint(plan.images) and set(other.edits) == set(plan.edits)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_shards_partition_the_edits(tmp_path, n):
    _, plan = _plan(PLAN, tmp_path)
    parts = [plan.shard_edits(i, n) for i in range(n)]
    assert set().union(*parts) == set(plan.edits)
    assert sum(len(p) for p in parts) == len(plan.edits)
    assert parts == [plan.shard_edits(i, n) for i in range(n)]


def test_prompt_sets_name_the_right_subjects(tmp_path):
    from bench.runner.plan import concept_prompts
    suite, _ = _plan(PLAN, tmp_path)
    sets = concept_prompts(suite, "snoopy")
    assert {p.subject for p in sets["target"]} == {"snoopy"}
    assert {p.subject for p in sets["related"]} <= {"english springer", "tench"}
    assert not {p.subject for p in sets["unrelated"]} & {"snoopy", "english springer"}


# -- sweeps and studies -------------------------------------------------------------------------
SWEEP = PLAN.replace("methods: [original, uce, fewshot-te]", """methods:
  - original
  - {name: fewshot-te, study: subsets, overrides: {steps: 4}, sweep: {variant: [te-mlp, te-attn]}}
  - {name: fewshot-te, label: "shots {}", sweep: {k: [1, 2, 4]}}
  - {name: fewshot-te, label: same as te-mlp, variant: te-mlp, overrides: {steps: 4}}""")


def test_a_sweep_expands_into_one_labelled_arm_per_value(tmp_path):
    suite, plan = _plan(SWEEP, tmp_path)
    arms = [m for m in suite.methods if m.name == "fewshot-te"]
    assert [m.label for m in arms] == ["te-mlp", "te-attn", "shots k=1", "shots k=2", "shots k=4", "same as te-mlp"]
    assert [m.variant for m in arms[:2]] == ["te-mlp", "te-attn"]
    assert dict(arms[3].overrides) == {"k": 2} and arms[3].swept == (("k", 2),)
    assert arms[0].study == "subsets" and arms[2].study == "fewshot-te: k" and arms[5].study is None
    labels = {r["variant"] for r in plan.rows if r["method"] == "fewshot-te"}
    assert labels == {m.label for m in arms}
    # an arm that repeats another's config is the same edit: erased and drawn once
    edit_of = {}
    for r in plan.rows:
        edit_of.setdefault(r["variant"], set()).add(r["edit_id"])
    assert edit_of["te-mlp"] == edit_of["same as te-mlp"] and edit_of["te-mlp"] != edit_of["te-attn"]
    per_arm = len(plan.rows) // (len(arms) + 1)
    assert len({r["image_id"] for r in plan.rows}) == per_arm * (5 + 1)  # 5 distinct arms + the original
    assert plan.erasures == 5 * 2 * 2


@pytest.mark.parametrize("entry, key, message", [
    ("{name: fewshot-te, sweep: {kk: [1, 2]}}", "methods[1].sweep.kk", "did you mean 'k'"),
    ("{name: fewshot-te, sweep: {lr: []}}", "methods[1].sweep.lr", "non-empty list"),
    ("{name: fewshot-te, sweep: {}}", "methods[1].sweep", "mapping key -> [values]"),
    ("{name: fewshot-te, sweep: {lr: [1, 1]}}", "methods[1].sweep.lr", "duplicate value"),
    ("{name: fewshot-te, overrides: {lr: 1}, sweep: {lr: [2]}}", "methods[1].sweep.lr", "both swept and fixed"),
    ("{name: fewshot-te, label: x, sweep: {lr: [2]}}", "methods[1].label", "template"),
    ("{name: fewshot-te, sweep: {variant: [te-foo]}}", "methods[1] (arm 'te-foo')", "unknown text-encoder subset"),
    ("{name: negative-prompt, sweep: {variant: [a]}}", "methods[1].sweep.variant", "unknown key"),
])
def test_a_bad_sweep_is_one_line_naming_the_key(tmp_path, entry, key, message):
    from bench.suite import validate_suite_file
    path = tmp_path / "s.yaml"
    path.write_text(PLAN.replace("methods: [original, uce, fewshot-te]", f"methods: [original, {entry}]"))
    problems = validate_suite_file(path)
    assert len(problems) == 1, problems
    assert (repr(key) in problems[0] or f'"{key}"' in problems[0]) and message in problems[0], problems


def test_two_arms_with_one_label_are_refused(tmp_path):
    from bench.suite import validate_suite_file
    path = tmp_path / "s.yaml"
    path.write_text(PLAN.replace("methods: [original, uce, fewshot-te]",
                                 "methods: [original, {name: fewshot-te, variant: te-mlp}, "
                                 "{name: fewshot-te, label: te-mlp, overrides: {lr: 1}}]"))
    problems = validate_suite_file(path)
    assert len(problems) == 1 and "duplicate arm" in problems[0]


def test_edit_addresses_follow_the_methods_family_defaults(tmp_path):
    """Re-tuned defaults (methods/defaults.py) erase again: they are part of an edit's address."""
    from bench.runner.plan import build_plan
    suite, plan = _plan(PLAN, tmp_path)
    versions = {m: "1" for m in ["original", "uce", "fewshot-te"]}
    same = build_plan(suite, {"m": "fp"}, versions, None, {"fewshot-te": {"mini": {}}, "uce": {}})
    retuned = build_plan(suite, {"m": "fp"}, versions, None, {"fewshot-te": {"mini": {"lr": 2e-4}}})
    ids = lambda p, m: {e.id for e in p.edits.values() if e.method == m}  # noqa: E731
    assert ids(same, "fewshot-te") == ids(plan, "fewshot-te")  # no defaults: the old address
    assert ids(retuned, "fewshot-te").isdisjoint(ids(plan, "fewshot-te"))
    assert ids(retuned, "uce") == ids(plan, "uce") and ids(retuned, "original") == ids(plan, "original")


TRANSFER = PLAN.replace("models: [{id: m, path: miniworld}]",
                        "models: [{id: m, path: miniworld}, {id: b, path: miniworld-small-unet}]")


def test_a_transfer_arm_draws_on_the_other_model_with_the_source_edit(tmp_path):
    from bench.runner.plan import build_plan
    from bench.suite import load_suite
    path = tmp_path / "t.yaml"
    path.write_text(TRANSFER.replace("methods: [original, uce, fewshot-te]",
                                     "methods: [original, fewshot-te, {name: fewshot-te, transfer_from: m}]"))
    suite = load_suite(path)
    assert [m.label for m in suite.methods] == ["", "", "from m"]
    plan = build_plan(suite, {"m": "fa", "b": "fb"}, {"fewshot-te": "1"})
    rows = {(r["model"], r["variant"]) for r in plan.rows}
    assert rows == {("m", ""), ("b", "")} | {("b", "from m")}  # never plugged into its own model
    transfers = [e for e in plan.edits.values() if e.source]
    assert len(transfers) == 2 * 2 and all(e.model == "b" for e in transfers)
    for e in transfers:  # the source is model m's own fewshot-te edit of the same concept and seed
        source = plan.edits[e.source]
        assert (source.model, source.method, source.concept, source.seed, source.source) == \
            ("m", "fewshot-te", e.concept, e.seed, None)
        assert any(r["edit_id"] == source.id and r["model"] == "m" for r in plan.rows)


@pytest.mark.parametrize("entry, message", [
    ("{name: fewshot-te, transfer_from: z}", "is no model of this suite"),
    ("{name: uce, transfer_from: m}", "only a text-encoder edit transfers"),
    ("{name: negative-prompt, transfer_from: m}", "only a text-encoder edit transfers"),
])
def test_a_bad_transfer_is_one_line(tmp_path, entry, message):
    from bench.suite import validate_suite_file
    path = tmp_path / "t.yaml"
    path.write_text(TRANSFER.replace("methods: [original, uce, fewshot-te]", f"methods: [original, {entry}]"))
    problems = validate_suite_file(path)
    assert len(problems) == 1 and message in problems[0], problems


def test_the_transfer_model_shares_the_shipped_text_encoder():
    """miniworld-small-unet links the shipped text encoder, tokenizer and VAE, and has its own UNet."""
    from bench.runner import models
    a, b = Path(models.resolve("miniworld")), Path(models.resolve("miniworld-small-unet"))
    for part in ("text_encoder", "tokenizer", "vae", "scheduler"):
        assert (b / part).resolve() == (a / part).resolve()
    assert (b / "unet").resolve() != (a / "unet").resolve()
    assert models.fingerprint(str(a)) != models.fingerprint(str(b))


def test_a_shipped_models_fingerprint_is_the_digest_of_its_folders_checksum_lines():
    """The bytes every edit's content address holds: the sorted SHA256SUMS lines of the model's
    folder and the folders it links to (the small-UNet pipeline links the shipped one's parts)."""
    import hashlib
    from bench.runner import models
    for name, folders in (("miniworld", ("pipeline",)), ("miniworld-small-unet", ("pipeline", "pipeline-small-unet"))):
        path = Path(models.resolve(name))
        raw = (path.parent / "SHA256SUMS").read_text().splitlines()
        lines = sorted(line for line in raw if line.split("  ", 1)[-1].split("/")[0] in folders)
        assert lines
        expected = "miniworld:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
        assert models.fingerprint(str(path)) == expected, name
