"""The CLI contract: exit codes, one-line errors, ls/validate/miniworld render output."""

import json
import subprocess
import sys

import pytest

from bench.cli import main


def run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True)
    return result.returncode, result.stdout, result.stderr


def test_ls_concepts_json(capsys):
    assert main(["ls", "concepts", "--catalog", "miniworld", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    types = [r["type"] for r in rows]
    assert types.count("object") >= 10 and types.count("style") >= 4
    assert sum(1 for r in rows if r["type"] == "instance" and r["parent"]) >= 3


def test_validate_ok_and_bad(tmp_path):
    code, out, _ = run_cli("validate", "datasets/catalogs/miniworld.yaml", "datasets/catalogs/paper.yaml")
    assert code == 0 and out.count(": ok") == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\nconcepts:\n  - {name: a, type: object, templates: ['']}\n"
                   "  - {name: b, type: instance, parent: zz, templates: ['{}']}\n")
    code, out, err = run_cli("validate", str(bad))
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 2
    assert "concept 'a': key 'templates'" in lines[0] and "concept 'b': key 'parent'" in lines[1]


def test_validate_takes_a_shipped_suites_name(capsys):
    assert main(["validate", "mini-default"]) == 0
    assert capsys.readouterr().out.strip() == "mini-default: ok"
    assert main(["validate", "no-such-suite"]) == 1
    assert capsys.readouterr().err.strip() == "no-such-suite: file not found"


def test_usage_error_exit_2_one_line():
    code, _, err = run_cli("ls", "nonsense")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_unknown_catalog_is_one_line_exit_1():
    code, _, err = run_cli("ls", "concepts", "--catalog", "nope")
    assert code == 1 and err.strip().count("\n") == 0 and "unknown catalog 'nope'" in err


@pytest.mark.parametrize("command", [[], ["ls"], ["validate"], ["miniworld"], ["miniworld", "render"],
                                     ["miniworld", "sheet"], ["miniworld", "train"]])
def test_help_everywhere(command):
    code, out, _ = run_cli(*command, "--help")
    assert code == 0 and "usage:" in out


def test_miniworld_render_writes_pngs_and_captions(tmp_path):
    out = tmp_path / "snoopy"
    assert main(["miniworld", "render", "--concept", "snoopy", "--n", "3", "--seed", "7",
                 "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 3
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["concept"] == "snoopy" and "snoopy" in r["caption"] for r in rows)
    assert all({"file", "caption", "concept", "style", "boxes"} <= set(r) for r in rows)


def test_miniworld_render_unknown_concept(tmp_path):
    code, _, err = run_cli("miniworld", "render", "--concept", "snopy", "--n", "1", "--seed", "0",
                           "--out", str(tmp_path / "x"))
    assert code == 1 and "did you mean 'snoopy'" in err and not (tmp_path / "x").exists()


def test_miniworld_render_bad_n_is_usage_error(tmp_path):
    code, _, err = run_cli("miniworld", "render", "--concept", "snoopy", "--n", "0", "--seed", "0",
                           "--out", str(tmp_path / "x"))
    assert code == 2 and "positive integer" in err


@pytest.mark.parametrize("args, message", [
    (["clip", "--device", "cuda"], "--device applies to the clip-image, decoder, unet stage only, not to 'clip'"),
    (["unet", "--device", "gpu0"], "--device 'gpu0': not a torch device"),
    (["unet", "--device", "meta"], "the unet stage trains on cpu or cuda only"),
    (["clip", "--size", "wide"], "--size applies to the clip-image, unet stage only, not to 'clip'"),
    (["vae", "--batch", "8"], "--batch applies to the clip, clip-image, decoder, unet stage only, not to 'vae'"),
    (["unet", "--resume", "--time-budget", "60"], "cannot be combined with --resume"),
    (["vae", "--refine-shipped"], "--refine-shipped applies to the decoder stage only, not to 'vae'"),
])
def test_miniworld_train_device_errors_are_one_line(tmp_path, args, message):
    code, _, err = run_cli("miniworld", "train", *args, "--out", str(tmp_path / "mw"))
    assert code == 1 and err.strip().count("\n") == 0 and message in err
    assert not (tmp_path / "mw").exists()  # refused before any stage wrote anything


@pytest.mark.parametrize("args", [["--lr", "0"], ["--time-budget", "-5"], ["--size", "huge"]])
def test_miniworld_train_bad_numbers_are_usage_errors(tmp_path, args):
    code, _, err = run_cli("miniworld", "train", "unet", *args, "--out", str(tmp_path / "mw"))
    assert code == 2 and not (tmp_path / "mw").exists()


def test_miniworld_train_on_missing_cuda_is_one_line(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli("miniworld", "train", "unet", "--device", "cuda", "--out", str(tmp_path / "mw"))
    assert code == 1 and "CUDA is not available" in err and not (tmp_path / "mw").exists()


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("[1, 2]", "expected a JSON object with a 'focus_weights' mapping"),
    ('{"focus_weights": {"snoopyy": 2}}', "focus_weights.snoopyy: not a mini-world concept or style"),
    ('{"focus_weights": {"tench": -1}}', "focus_weights.tench: expected a positive number, got -1"),
])
def test_miniworld_train_focus_errors_are_one_line(tmp_path, content, message):
    focus = tmp_path / "focus.json"
    if content is not None:
        focus.write_text(content)
    code, _, err = run_cli("miniworld", "train", "unet", "--focus", str(focus), "--out", str(tmp_path / "mw"))
    assert code == 1 and err.strip().count("\n") == 0 and message in err and str(focus) in err
    assert not (tmp_path / "mw").exists()


def test_miniworld_train_focus_is_for_the_unet_only(tmp_path):
    focus = tmp_path / "focus.json"
    focus.write_text('{"focus_weights": {"tench": 2}}')
    code, _, err = run_cli("miniworld", "train", "clip", "--focus", str(focus), "--out", str(tmp_path / "mw"))
    assert code == 1 and "--focus applies to the unet stage only, not to 'clip'" in err
