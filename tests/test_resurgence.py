"""Resurgence studies: fine-tuning, its data, the suite section, the runner and the report.

    python -m pytest tests/test_resurgence.py -q      # about a minute on 2 busy cores

Everything runs on the tiny pipeline (--smoke for the runner); the fine-tuning engine is checked
on its own (what LoRA and full fine-tuning change, determinism, a diverging run), the data on
the mini-world renderer (benign captions never name the concept), the suite section's errors
one by one, and a small study end to end: rows, the control's data and seeds, kill-and-resume.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import EraselabError

SUITE = """
suite: tiny-resurgence
catalog: miniworld
smoke_sized: true
models: [{id: miniworld, path: miniworld}]
methods: [original, uce]
concepts: [church]
prompt_sets: {target: {prompts: 1, samples: 2}, unrelated: {prompts: 1, samples: 2}}
sampler: {steps: 2, guidance: 6.0, batch_size: 4}
scorers: [clip-score]
preservation: []
seeds: [0]
resurgence:
  arms: [uce]
  steps: [0, 1, 2]
  images: 4
  intermediate_sets: [target]
  chains:
    - {data: unrelated, module: unet, mode: [lora, full]}
    - {data: relearn, shots: 2, module: text_encoder, mode: lora}
  drift: [{guidance: 1.0}]
  sequential: [church, snoopy]
"""


@pytest.fixture(scope="module")
def catalog():
    from bench.catalog import load_catalog
    return load_catalog("miniworld")


@pytest.fixture(scope="module")
def pairs(catalog):
    from bench.finetune_data import finetune_pairs
    return finetune_pairs(catalog, "snoopy", "unrelated", 6, seed=0)


def _delta(module, mode, pairs, seed=0, lr=1e-3, steps=(0, 2)):
    from bench.finetune import Recipe, finetune
    from bench.tiny import tiny_pipeline
    out = {}
    finetune(tiny_pipeline(), pairs, Recipe(module=module, mode=mode, lr=lr, batch_size=2, steps=steps),
             seed=seed, on_checkpoint=lambda step, result: out.__setitem__(step, result), progress=False)
    return out


# --- the fine-tuning engine --------------------------------------------------------------
@pytest.mark.parametrize("module,mode", [("unet", "lora"), ("unet", "full"),
                                         ("text_encoder", "lora"), ("text_encoder", "full")])
def test_finetuning_changes_only_what_it_claims(pairs, module, mode):
    from bench.finetune import LORA_TARGETS, Recipe, trained_names
    from bench.tiny import tiny_pipeline
    pipe = tiny_pipeline()
    before = {n: p.detach().clone() for n, p in pipe.unet.named_parameters()}
    out = _delta(module, mode, pairs)
    assert set(out) == {0, 2}
    assert out[0].delta == {}  # step 0 of an unedited model: nothing changed yet
    changed = set(out[2].delta)
    assert changed, "fine-tuning changed nothing"
    claimed = {f"{module}.{n}" for n in trained_names(getattr(pipe, module), Recipe(module, mode, 1e-3, 2, (0, 2)))}
    assert changed <= claimed
    if mode == "lora":
        targets = LORA_TARGETS[module]
        assert all(any(n.endswith(f"{t}.weight") for t in targets) for n in changed)
    # the pipeline handed in is never changed: a copy trains
    fresh = tiny_pipeline()
    assert all(p.equal(before[n]) for n, p in fresh.unet.named_parameters())


def test_finetuning_is_deterministic_and_seeded(pairs):
    a = _delta("unet", "lora", pairs, seed=3)[2].delta
    b = _delta("unet", "lora", pairs, seed=3)[2].delta
    c = _delta("unet", "lora", pairs, seed=4)[2].delta
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert any(not a[k].equal(c[k]) for k in a)


def test_a_diverging_finetune_stops_with_the_step(pairs):
    with pytest.raises(EraselabError, match=r"step \d+/\d+"):
        _delta("unet", "full", pairs, lr=1e30, steps=(0, 3))


def test_a_checkpoint_of_an_edited_model_keeps_the_edit_and_reloads(pairs, tmp_path):
    from bench.finetune import Recipe, finetune
    from bench.tiny import tiny_pipeline
    from methods.delta import load_edit, named_tensors, reset_edits
    from methods.erase import erase
    pipe = tiny_pipeline()
    edit = erase(pipe, "uce", "church", seed=0, progress=False)
    saved = {}
    finetune(edit.pipeline, pairs, Recipe("unet", "lora", 1e-3, 2, (0, 2)), seed=0,
             on_checkpoint=lambda s, r: saved.__setitem__(s, r), progress=False)
    assert set(edit.delta) <= set(saved[2].delta)  # the erasure is still in the checkpoint
    assert saved[2].record["edits"][-1]["method"] == "finetune"
    saved[2].save(tmp_path / "ck")
    reset_edits(edit.pipeline)
    loaded = named_tensors(load_edit(tiny_pipeline(), tmp_path / "ck"))
    assert all(loaded[n].equal(t) for n, t in saved[2].delta.items())


# --- the data ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["unrelated", "related"])
def test_benign_data_never_names_the_concept(catalog, kind):
    from bench.finetune_data import finetune_pairs, names_concept, neighbourhood
    for concept in ("church", "snoopy", "van gogh"):
        got = finetune_pairs(catalog, concept, kind, 12, seed=0)
        assert len(got) == 12
        assert not any(names_concept(caption, concept) for _, caption in got)
    assert "notre dame" in neighbourhood(catalog, "church")


def test_relearning_data_shows_the_concept_but_not_the_erasure_images(catalog):
    import numpy as np
    from bench.fewshot import load_fewshot_images
    from bench.finetune_data import finetune_pairs
    got = finetune_pairs(catalog, "snoopy", "relearn", 4, seed=0)
    assert all("snoopy" in caption for _, caption in got)
    shots = [np.asarray(im) for im in load_fewshot_images(catalog["snoopy"], 4, 0)]
    assert not any(np.array_equal(np.asarray(im), s) for im, _ in got for s in shots)


def test_data_from_a_path_is_checked(tmp_path, catalog):
    from PIL import Image
    from bench.finetune_data import finetune_pairs, read_pairs
    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    with pytest.raises(EraselabError, match="captions.jsonl"):
        read_pairs(folder)
    (folder / "captions.jsonl").write_text(json.dumps({"file": "a.png", "caption": "a red church"}) + "\n")
    with pytest.raises(EraselabError, match="names 'church'"):
        finetune_pairs(catalog, "church", "unrelated", 4, 0, source=folder)
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(json.dumps({"image": "data/a.png", "caption": "a red square"}) + "\n"
                     + json.dumps({"image": "data/missing.png", "caption": "x"}) + "\n")
    with pytest.raises(EraselabError, match="line 2.*not found"):
        read_pairs(jsonl)


# --- the suite section -------------------------------------------------------------------
def _problems(tmp_path, replace: tuple[str, str]):
    from bench.runner.suite import validate_suite_file
    path = tmp_path / "s.yaml"
    text = SUITE.replace(*replace)
    assert text != SUITE
    path.write_text(text)
    return validate_suite_file(path)


@pytest.mark.parametrize("old,new,message", [
    ("arms: [uce]", "arms: [ucee]", "no arm 'ucee'"),
    ("arms: [uce]", "arms: [esd-x]", "no arm 'esd-x'"),
    ("steps: [0, 1, 2]", "steps: [0, 2, 1]", "must increase"),
    ("{data: unrelated,", "{data: unrelatd,", "unknown data 'unrelatd'"),
    ("shots: 2, ", "", "relearning needs shots"),
    ("mode: [lora, full]", "mode: [lora, half]", "unknown mode 'half'"),
    ("drift: [{guidance: 1.0}]", "drift: [{sampler: ddim}]", "drift[0].sampler"),
    ("sequential: [church, snoopy]", "sequential: [church, snopy]", "no concept 'snopy'"),
    ("intermediate_sets: [target]", "intermediate_sets: [targets]", "intermediate_sets"),
    ("  images: 4\n", "  images: 4\n  sources: {unrelated: nowhere}\n", "not found"),
])
def test_a_bad_section_is_one_line(tmp_path, old, new, message):
    problems = _problems(tmp_path, (old, new))
    assert len(problems) == 1 and message in problems[0], problems
    assert "resurgence" in problems[0] and "\n" not in problems[0]


def test_an_empty_data_folder_is_refused_before_any_work(tmp_path, capsys):
    from bench.cli import main
    (tmp_path / "empty").mkdir()
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.replace("  images: 4\n", f"  images: 4\n  sources: {{unrelated: {tmp_path / 'empty'}}}\n"))
    assert main(["run", str(path), "--smoke", "--out", str(tmp_path / "run")]) == 1
    assert "image folder is empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- a study end to end -------------------------------------------------------------------
def _run(suite_path, out):
    from bench.runner.run import run_suite
    from bench.suite import load_suite
    return run_suite(load_suite(suite_path), out, smoke=True, progress=False)


def _canonical(run_dir: Path) -> pd.DataFrame:
    from bench.core.schema import ROW_KEY
    frame = pd.read_parquet(run_dir / "results.parquet").drop(columns=["run"])
    frame["png_sha"] = [hashlib.sha256((run_dir / p).read_bytes()).hexdigest() for p in frame["image_path"]]
    return frame.sort_values(list(ROW_KEY)).reset_index(drop=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    path = folder / "s.yaml"
    path.write_text(SUITE)
    summary = _run(path, folder / "run")
    return path, folder / "run", summary


def test_a_study_plans_every_arm_checkpoint_and_setting(study):
    _, run_dir, summary = study
    assert summary["complete"]
    from bench.core.schema import RESURGENCE_COLUMNS
    rows = pd.read_parquet(run_dir / "results.parquet")
    assert set(RESURGENCE_COLUMNS) <= set(rows.columns)
    kinds = rows.groupby("resurgence").size().to_dict()
    assert set(kinds) == {"finetune", "relearn", "drift", "sequential"}
    ft = rows[rows["resurgence"] == "finetune"]
    # 2 chains x 3 steps x (uce + the control), each judged on its concept's prompt sets
    assert set(zip(ft["base_arm"], ft["chain"], ft["step"].astype(int))) == {
        (arm, chain, s) for arm in ("uce", "original") for chain in ("unrelated unet lora", "unrelated unet full")
        for s in (0, 1, 2)}
    # step 0 is the start edit itself; later steps are new edits
    at0 = ft[(ft["base_arm"] == "uce") & (ft["step"] == 0)]["edit_id"].unique()
    main = rows[(rows["method"] == "uce") & (rows["variant"] == "")]["edit_id"].unique()
    assert list(at0) == list(main)
    # between the first and the last step only the target set is drawn (intermediate_sets)
    sets = ft.groupby(ft["step"].astype(int))["prompt_set"].agg(lambda v: sorted(set(v))).to_dict()
    assert sets == {0: ["target", "unrelated"], 1: ["target"], 2: ["target", "unrelated"]}
    full = ft[ft["chain"] == "unrelated unet full"]
    assert set(full["ft_data"]) == {"unrelated"} and set(full["ft_module"]) == {"unet"} \
        and set(full["ft_mode"]) == {"full"}
    seq = rows[rows["resurgence"] == "sequential"]
    assert set(seq["concept"]) == {"church", "snoopy"} and set(seq["step"].astype(int)) == {1, 2}


def test_the_control_uses_the_same_data_and_seeds_as_the_edited_arm(study):
    _, run_dir, _ = study
    rows = pd.read_parquet(run_dir / "results.parquet")
    last = rows[(rows["resurgence"] == "finetune") & (rows["step"] == 2)]

    def entry(arm, chain):
        edit = last[(last["base_arm"] == arm) & (last["chain"] == chain)]["edit_id"].iloc[0]
        record = json.loads((run_dir / "edits" / edit / "edit.json").read_text())
        return {k: v for k, v in record["edits"][-1].items() if k != "seconds"}

    for chain in ("unrelated unet lora", "unrelated unet full"):
        assert entry("uce", chain) == entry("original", chain)
    # the same prompts, samples and image seeds on both sides
    key = ["chain", "step", "prompt_id", "sample", "seed"]
    a = last[last["base_arm"] == "uce"][key].sort_values(key).reset_index(drop=True)
    b = last[last["base_arm"] == "original"][key].sort_values(key).reset_index(drop=True)
    assert a.equals(b)


def test_the_control_is_not_every_rows_twin(study):
    _, run_dir, _ = study
    agg = pd.read_parquet(run_dir / "aggregates.parquet")
    ctrl = agg[(agg["method"] == "original") & (agg["variant"] != "") & (agg["metric"] == "clip_score")]
    assert len(ctrl) and ctrl["n_pairs"].gt(0).all()  # it is compared with the plain original
    plain = agg[(agg["method"] == "original") & (agg["variant"] == "") & (agg["metric"] == "clip_score")]
    assert plain["n_pairs"].eq(0).all()


def test_killing_a_study_and_resuming_gives_the_same_rows(study, tmp_path):
    path, run_dir, _ = study
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    # as if killed mid-way: no results, some checkpoints and image parts gone
    for name in ("results.parquet", "aggregates.parquet", "manifest.json"):
        (copy / name).unlink()
    # (a chain saves its checkpoints before any of their images: a checkpoint gone means its
    # images and their scores are gone too)
    rows = pd.read_parquet(run_dir / "results.parquet")
    lost = rows[rows["edit_id"].isin(rows[rows["step"] == 2]["edit_id"].unique()[:2])]
    for edit in lost["edit_id"].unique():
        shutil.rmtree(copy / "edits" / edit)
        shutil.rmtree(copy / "images" / edit, ignore_errors=True)
    parts = sorted((copy / "parts" / "images").glob("*.parquet"))
    for i, part in enumerate(parts):
        if i % 2 == 0 or pd.read_parquet(part)["image_id"].isin(lost["image_id"]).any():
            part.unlink()
    _run(path, copy)
    assert _canonical(copy).equals(_canonical(run_dir))


def test_the_report_has_the_resurgence_sections(study, tmp_path):
    from reports.build import build_report
    _, run_dir, _ = study
    out = build_report(run_dir, out=tmp_path / "report", formats=("md",))
    text = out.read_text()
    for title in ("Resurgence: benign fine-tuning", "Resurgence: relearning", "Resurgence: sampler drift",
                  "Resurgence: sequential erasure"):
        assert f"### {title}" in text
    main_table = text.split("## Figures")[0]
    assert "@1" not in main_table and "drift guidance" not in main_table  # the arms stay in their sections


# --- the report's rules ------------------------------------------------------------------
def _est(value, lo, hi):
    from reports.metrics import Estimate
    return Estimate(value, delta=value - 0.9, delta_lo=lo, delta_hi=hi)


def test_back_is_the_first_step_whose_interval_reaches_the_original():
    from reports.resurgence import _back_step
    steps = [0, 10, 20, 40]
    assert _back_step(steps, [_est(0.1, -0.9, -0.7), _est(0.3, -0.7, -0.4), _est(0.7, -0.4, 0.02),
                              _est(0.9, -0.1, 0.1)]) == ("back", 20)
    assert _back_step(steps, [_est(0.1, -0.9, -0.7)] * 4) == ("not back", None)
    assert _back_step(steps, [_est(0.8, -0.3, 0.05)] * 4) == ("not erased", None)
    assert math.isnan(_est(0.1, math.nan, math.nan).delta_lo)
