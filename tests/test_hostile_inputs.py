"""Hostile input and faults: every bad input is one line on stderr, exit 1, no traceback, nothing
half-written, and no weights file a user supplies runs code.

    python -m pytest tests/test_hostile_inputs.py -q -p no:cacheprovider     # ~1 min on 2 cores

The malicious weights files are pickles whose ``__reduce__`` would create a marker file; each
test asserts the marker does not exist afterwards. CLI calls are in-process (``bench.cli.main``)
except where a second process is the point (locks) or where stray warnings on the real stderr
must be seen (the YOLO pickle).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.errors import EraselabError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "datasets" / "miniworld" / "v1"

SUITE = """
suite: hostile
catalog: {catalog}
smoke_sized: true
models: [{{id: miniworld, path: miniworld}}]
methods: [original, uce]
concepts: [church]
prompt_sets: {{target: {{prompts: 1, samples: 2}}, related: {{prompts: 1, samples: 1}}, unrelated: {{prompts: 1, samples: 1}}}}
sampler: {{steps: 2, guidance: 6.0, batch_size: 2}}
scorers: [clip-score, mapping]
preservation: []
seeds: [0]
"""


# -- helpers --------------------------------------------------------------------------------
def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1, err[:2000]
    assert lines[0].startswith("eraselab: error: "), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


class _Payload:
    """Unpickling this calls os.system: it creates ``marker`` if any loader runs pickled code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_torch_file(path: Path, marker: Path) -> Path:
    import torch
    torch.save({"model": _Payload(marker), "state_dict": _Payload(marker)}, path)
    return path


def malicious_raw_pickle(path: Path, marker: Path) -> Path:
    import pickle
    path.write_bytes(pickle.dumps(_Payload(marker)))
    return path


def png_bomb(path: Path, side: int = 200_000) -> Path:
    """A valid PNG header declaring side x side pixels, a few bytes long."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def rendered_folder(folder: Path, concept: str = "church", n: int = 2) -> Path:
    assert main(["miniworld", "render", "--concept", concept, "--n", str(n), "--seed", "0",
                 "--out", str(folder)]) == 0
    return folder


def prompts_file(folder: Path, names: list[str]) -> Path:
    path = folder.parent / f"{folder.name}-prompts.jsonl"
    path.write_text("".join(json.dumps({"image": n, "prompt": "a church"}) + "\n" for n in names))
    return path


@pytest.fixture(scope="module")
def smoke_clip():
    from bench.runner.smoke import register_clip
    return register_clip()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished smoke run of a suite that names its catalog by path and scores mapping."""
    folder = tmp_path_factory.mktemp("hostile-run")
    catalog = folder / "my-catalog.yaml"
    # a name no catalog under datasets/catalogs/ has: only its path finds it
    catalog.write_text((REPO / "datasets" / "catalogs" / "miniworld.yaml").read_text()
                       .replace("name: miniworld", "name: my-world", 1))
    shutil.copyfile(REPO / "datasets" / "catalogs" / "_templates.yaml", folder / "_templates.yaml")
    suite = folder / "hostile.yaml"
    suite.write_text(SUITE.format(catalog=catalog))
    from bench.runner.run import run_suite
    from bench.suite import load_suite
    run_suite(load_suite(suite), folder / "run", smoke=True, progress=False)
    return suite, folder / "run"


def copy_run(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to


# -- security: weights files that would run code --------------------------------------------
def test_yolo_weights_pickle_runs_no_code(tmp_path):
    """`score --scorers yolo --weights evil.pt`: refused in ultralytics' restricted mode, one line
    on the real stderr (a subprocess: torch's unpickler warning would show there)."""
    images = rendered_folder(tmp_path / "imgs")
    prompts = prompts_file(images, ["00000.png"])
    for maker in (malicious_torch_file, malicious_raw_pickle):
        marker = tmp_path / f"marker-{maker.__name__}"
        evil = maker(tmp_path / f"{maker.__name__}.pt", marker)
        proc = subprocess.run([sys.executable, "-m", "bench.cli", "score", str(images), "--prompts",
                               str(prompts), "--scorers", "yolo", "--weights", str(evil)],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        assert_one_line_error(proc.returncode, proc.stderr, str(evil), "not loadable YOLO weights")
        assert not marker.exists(), "the pickle's payload ran"


def _detector_copy(tmp_path: Path, edit) -> Path:
    import yaml
    folder = tmp_path / "det"
    folder.mkdir()
    shutil.copyfile(SHIPPED / "detector" / "model.safetensors", folder / "model.safetensors")
    config = yaml.safe_load((SHIPPED / "detector" / "model.yaml").read_text())
    edit(config)
    (folder / "model.yaml").write_text(yaml.safe_dump(config))
    return folder / "model.safetensors"


def test_yolo_safetensors_yaml_is_not_evaluated(tmp_path, capsys):
    """The safetensors format's yaml: an `activation` expression or a non-layer name runs nothing."""
    images = rendered_folder(tmp_path / "imgs")
    prompts = prompts_file(images, ["00000.png"])
    marker = tmp_path / "marker"
    cases = {"activation": lambda c: c["model"].__setitem__(
                 "activation", f"__import__('os').system('touch {marker}')"),
             "layer": lambda c: c["model"]["backbone"][0].__setitem__(2, "eval")}
    for name, edit in cases.items():
        (tmp_path / name).mkdir()
        weights = _detector_copy(tmp_path / name, edit)
        code, _, err = cli(capsys, "score", images, "--prompts", prompts, "--scorers", "yolo",
                           "--weights", weights)
        assert_one_line_error(code, err, "model.yaml", "not a buildable ultralytics detection model")
        assert not marker.exists()


def test_shipped_detector_is_safetensors_and_checksummed():
    """No pickle ships: the detector is model.safetensors + model.yaml, both in SHA256SUMS."""
    from bench.miniworld.weights import read_sums
    from detectors.yolo import load_yolo, mini_detector_path
    pickles = [p for p in SHIPPED.rglob("*") if p.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt")]
    assert not pickles
    sums = read_sums(SHIPPED)
    assert {"detector/model.safetensors", "detector/model.yaml"} <= set(sums)
    assert not [p for p in sums if not (SHIPPED / p).is_file()]
    model = load_yolo(str(mini_detector_path()))
    assert model.overrides["imgsz"] == 128 and len(model.names) == 16


def test_clip_pretrained_pickle_is_one_line(tmp_path, capsys, smoke_clip):
    images = rendered_folder(tmp_path / "imgs")
    prompts = prompts_file(images, ["00000.png", "00001.png"])
    marker = tmp_path / "marker"
    evil = malicious_torch_file(tmp_path / "clip.pt", marker)
    code, _, err = cli(capsys, "score", images, "--prompts", prompts, "--scorers", "clip-score",
                       "--clip-model", smoke_clip, "--clip-pretrained", evil)
    assert_one_line_error(code, err, str(evil), "refused")
    assert not marker.exists()


def test_model_folder_with_pickled_weights_is_refused(tmp_path, capsys):
    """`erase --model DIR`: a pipeline folder with a pickled .bin instead of safetensors."""
    from bench.tiny import tiny_pipeline
    model = tmp_path / "pipe"
    tiny_pipeline().save_pretrained(model)
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    marker = tmp_path / "marker"
    malicious_torch_file(model / "unet" / "diffusion_pytorch_model.bin", marker)
    out = tmp_path / "out"
    capsys.readouterr()  # save_pretrained's own progress bar
    code, _, err = cli(capsys, "erase", "--model", model, "--method", "uce", "--concept", "church",
                       "--seed", "0", "--out", out, "--no-progress", "--device", "cpu")
    assert_one_line_error(code, err, "cannot load a Stable Diffusion pipeline", "safetensors")
    assert not marker.exists() and not out.exists()


def test_delta_that_is_a_pickle_is_one_line(finished_run, tmp_path, capsys):
    """A run folder whose saved edits were replaced by pickles: the resume refuses them."""
    suite, run_dir = finished_run
    copy = copy_run(run_dir, tmp_path / "run")
    marker = tmp_path / "marker"
    for delta in copy.glob("edits/*/delta.safetensors"):
        malicious_torch_file(delta, marker)
    for derived in ("images", "parts"):  # make the rerun need the edits
        shutil.rmtree(copy / derived)
    for derived in ("results.parquet", "aggregates.parquet", "aggregates.csv", "manifest.json"):
        (copy / derived).unlink()
    code, _, err = cli(capsys, "run", suite, "--smoke", "--out", copy, "--no-progress")
    assert_one_line_error(code, err, "delta.safetensors", "unreadable delta")
    assert not marker.exists() and not (copy / "results.parquet").exists()


def test_timm_checkpoint_pickle_is_one_line(tmp_path):
    from detectors.imagenet import load_timm
    marker = tmp_path / "marker"
    evil = malicious_torch_file(tmp_path / "vit.pth", marker)
    with pytest.raises(EraselabError, match="refused, nothing from it was run"):
        load_timm("test_vit", pretrained=False, checkpoint_path=str(evil))
    assert not marker.exists()


# -- YAML: alias bombs, huge values ---------------------------------------------------------
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))


def _bomb_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bomb.yaml"
    path.write_text("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + body)
    return path


@pytest.mark.parametrize("command", [["validate"], ["ls", "concepts", "--catalog"],
                                     ["run", "--smoke", "--no-progress", "--out", "UNUSED"]])
def test_alias_bomb_fails_fast_with_one_line(tmp_path, capsys, command):
    bomb = _bomb_file(tmp_path, BOMB + "name: x\nversion: 1\nconcepts: *l9\nsuite: s\n")
    argv = [a if a != "UNUSED" else str(tmp_path / "out") for a in command]
    argv = argv[:1] + [str(bomb)] + argv[1:] if command[0] == "run" else argv + [str(bomb)]
    t0 = time.perf_counter()
    code, _, err = cli(capsys, *argv)
    assert time.perf_counter() - t0 < 5
    if command[0] == "validate":  # validate prints problems as they are, without the prefix
        assert code == 1 and err.strip().count("\n") == 0 and "aliases expand" in err
    else:
        assert_one_line_error(code, err, "aliases expand to more than")
    assert not (tmp_path / "out").exists()


def test_error_quoting_a_huge_value_stays_short(tmp_path, capsys):
    """A bomb within the bounds (6,561 leaves) quoted in a message: the quote is capped."""
    small = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 4))
    path = _bomb_file(tmp_path, small + "name: x\nversion: 1\nconcepts: [{name: q, type: *l3}]\n")
    code, _, err = cli(capsys, "ls", "concepts", "--catalog", path)
    line = assert_one_line_error(code, err, "key 'type'")
    assert len(line) < 2500
    long_name = "x" * 100_000
    path.write_text(f"name: x\nversion: 1\nconcepts: [{{name: {long_name}, type: nope}}]\n")
    code, _, err = cli(capsys, "ls", "concepts", "--catalog", path)
    assert len(assert_one_line_error(code, err, "'xxxxxxxx", "...: key 'type'")) < 1000


def test_recursive_alias_and_deep_nesting(tmp_path, capsys):
    path = tmp_path / "rec.yaml"
    for text, fragment in (("a: &a [1, *a]\n", "recursive"), ("a: " + "[" * 3000 + "]" * 3000, "nested")):
        path.write_text(text)
        code, _, err = cli(capsys, "ls", "concepts", "--catalog", path)
        assert_one_line_error(code, err, fragment)


def test_set_value_alias_bomb_is_one_line(capsys):
    """`--set preserve=<nested aliases>` (a list-typed key): refused by the bounded loader."""
    value = "&a [x, x, x, x, x, x, x, x, x]"
    for level in "bcdefgh":  # each level repeats the previous one 9 times: 9**8 leaves
        value = f"&{level} [{value}, " + ", ".join([f"*{chr(ord(level) - 1)}"] * 8) + "]"
    code, _, err = cli(capsys, "erase", "--method", "uce", "--concept", "church", "--seed", "0",
                       "--set", f"preserve=[{value}]", "--out", "/nonexistent/never-written")
    line = assert_one_line_error(code, err, "uce: key 'preserve'", "expected a list")
    assert len(line) < 500


# -- tracebacks that must be one line -------------------------------------------------------
def _tiny_suite(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SUITE.format(catalog="miniworld").replace("scorers: [clip-score, mapping]",
                                                              "scorers: [clip-score]"))
    return path


def test_run_out_is_a_file_or_below_one_or_unwritable(tmp_path, capsys, monkeypatch):
    suite = _tiny_suite(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, fragment in ((afile, "exists and is not a folder"),
                          (afile / "below", "is a file, not a folder"),
                          (Path("/proc/eraselab-run"), "cannot create the run folder")):
        code, _, err = cli(capsys, "run", suite, "--smoke", "--out", out, "--no-progress")
        assert_one_line_error(code, err, str(out), fragment)
    import errno
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if "readonly" in str(self):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = cli(capsys, "run", suite, "--smoke", "--out", tmp_path / "readonly", "--no-progress")
    assert_one_line_error(code, err, "Read-only file system")


def test_disk_full_while_saving_an_edit(tmp_path, capsys, monkeypatch):
    """safetensors' own error type for ENOSPC: 'out of disk space ... run again to resume'."""
    import safetensors.torch
    from safetensors import SafetensorError

    def full(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    out = tmp_path / "run"
    code, _, err = cli(capsys, "run", _tiny_suite(tmp_path), "--smoke", "--out", out, "--no-progress")
    assert_one_line_error(code, err, "out of disk space", "run again to resume")
    assert not list(out.rglob("delta.safetensors")) and not list(out.rglob(".*.tmp-*"))


def test_decompression_bomb_and_tiny_fewshot_images(tmp_path, capsys):
    """erase --images: refused before any model loads (a stated size rule for tiny ones)."""
    for name, make, fragment in (("bomb", png_bomb, "decompression bomb"),
                                 ("tiny", lambda p: __import__("PIL.Image").Image.new("RGB", (1, 1)).save(p),
                                  "at least 16 pixels")):
        folder = tmp_path / name
        folder.mkdir()
        make(folder / "x.png")
        out = tmp_path / f"out-{name}"
        t0 = time.perf_counter()
        code, _, err = cli(capsys, "erase", "--method", "fewshot-te", "--concept", "snoopy", "--seed", "0",
                           "--images", folder, "--out", out, "--no-progress")
        assert_one_line_error(code, err, str(folder / "x.png"), fragment)
        assert time.perf_counter() - t0 < 10 and not out.exists()


def test_compare_truncated_aggregates_unfinished_and_other_suite(finished_run, tmp_path, capsys):
    _, run_dir = finished_run
    truncated = copy_run(run_dir, tmp_path / "truncated")
    agg = truncated / "aggregates.parquet"
    agg.write_bytes(agg.read_bytes()[: agg.stat().st_size // 2])
    code, _, err = cli(capsys, "compare", run_dir, truncated)
    assert_one_line_error(code, err, "aggregates.parquet: cannot read parquet")

    unfinished = copy_run(run_dir, tmp_path / "unfinished")
    (unfinished / "manifest.json").unlink()
    code, _, err = cli(capsys, "compare", run_dir, unfinished)
    assert_one_line_error(code, err, "manifest.json", "a finished run?")

    other = copy_run(run_dir, tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["suite"] = "another-suite"
    (other / "manifest.json").write_text(json.dumps(manifest))
    for argv in (("compare", run_dir, other), ("report", other, "--compare", run_dir, "--format", "md",
                                               "--out", tmp_path / "report")):
        code, _, err = cli(capsys, *argv)
        assert_one_line_error(code, err, "another-suite", "--any-suites")
    assert not (tmp_path / "report").exists()
    assert cli(capsys, "compare", run_dir, run_dir)[0] == 0


# -- silent or inconsistent -----------------------------------------------------------------
def test_suite_with_a_catalog_path_validates_and_runs(finished_run, capsys):
    """What validate accepts runs: the mapping scorer gets the catalog's path, not its name."""
    import pandas as pd
    suite, run_dir = finished_run
    code, out, _ = cli(capsys, "validate", suite)
    assert code == 0 and ": ok" in out
    results = pd.read_parquet(run_dir / "results.parquet")
    assert results["mapped_to"].notna().all()


def test_empty_catalog_and_folder_as_catalog(tmp_path, capsys):
    empty, no_concepts = tmp_path / "empty.yaml", tmp_path / "none.yaml"
    empty.write_text("")
    no_concepts.write_text("name: x\nversion: 1\nconcepts: []\n")
    for path, fragment in ((empty, "empty"), (no_concepts, "at least one concept")):
        code, _, err = cli(capsys, "validate", path)
        assert code == 1 and fragment in err and err.strip().count("\n") == 0
    code, _, err = cli(capsys, "ls", "concepts", "--catalog", tmp_path)
    assert_one_line_error(code, err, "is a folder")


def test_render_then_erase_with_its_captions_file(tmp_path, capsys):
    """The README's pair: a rendered folder (PNGs + captions.jsonl) is read as few-shot images;
    captions attach to their images; an unlisted image is used with a note."""
    from bench.fewshot import images_from_folder
    folder = rendered_folder(tmp_path / "snoopy", "snoopy", 4)
    images = images_from_folder(folder, k=4, seed=0)
    assert len(images) == 4 and all("snoopy" in im.info["caption"] for im in images)
    shutil.copyfile(folder / "00000.png", folder / "extra.png")
    capsys.readouterr()
    assert len(images_from_folder(folder, k=8, seed=0)) == 5
    assert "1 images" in capsys.readouterr().err
    (folder / "captions.jsonl").write_text('{"file": "gone.png", "caption": "x"}\n')
    with pytest.raises(EraselabError, match="gone.png.*not in the folder"):
        images_from_folder(folder, k=4, seed=0)


def test_readme_render_then_erase_pair(tmp_path, capsys):
    """`miniworld render ... --out D` then `erase --method fewshot-te --images D`: it erases."""
    folder = rendered_folder(tmp_path / "D", "snoopy", 4)
    out = tmp_path / "E"
    code, stdout, err = cli(capsys, "erase", "--method", "fewshot-te", "--concept", "snoopy", "--seed", "0",
                            "--images", folder, "--out", out, "--set", "steps=1", "--no-progress",
                            "--device", "cpu")
    assert code == 0, err
    assert "erased snoopy" in stdout and (out / "delta.safetensors").is_file()


def test_style_probe_files_that_are_pickles(tmp_path):
    from detectors.style_probe import StyleProbe
    marker = tmp_path / "marker"
    shutil.copytree(SHIPPED / "probe", tmp_path / "probe")
    malicious_torch_file(tmp_path / "probe" / "probe.safetensors", marker)
    with pytest.raises(EraselabError, match="probe.safetensors: unreadable safetensors file"):
        StyleProbe.load(tmp_path / "probe")
    assert not marker.exists()


def test_score_notes_images_missing_from_the_prompts_file(tmp_path, capsys, smoke_clip):
    images = rendered_folder(tmp_path / "imgs", n=3)
    prompts = prompts_file(images, ["00000.png"])
    code, out, err = cli(capsys, "score", images, "--prompts", prompts, "--scorers", "clip-score",
                         "--clip-model", smoke_clip)
    assert code == 0 and "00000.png" in out
    assert err.strip().splitlines() == [f"eraselab: note: 2 images in {images} are not in the "
                                        f"prompts file and are not scored (first: 00001.png)"]


def test_cleanup_removes_dead_owners_temps_only(tmp_path):
    """A kill -9 during save_edit leaves `.<id>.tmp-<pid>-*/`: removed once its owner is gone."""
    import tempfile

    import methods.delta as base
    from bench.core.files import clean_stale_temps
    edits = tmp_path / "edits"
    dead = edits / f".abc.tmp-{dead_pid()}-x1y2z3"
    live = edits / f".def.tmp-{os.getpid()}-q9w8e7"
    ownerless = edits / ".ghi.tmp-k3j4h5g6"
    for d in (dead, live, ownerless):
        d.mkdir(parents=True)
    os.utime(ownerless, (time.time() - 7200, time.time() - 7200))
    assert clean_stale_temps(tmp_path) == 2
    assert live.exists() and not dead.exists() and not ownerless.exists()
    prefixes = []
    real = tempfile.mkdtemp
    base.tempfile.mkdtemp = lambda **k: prefixes.append(k["prefix"]) or real(**k)
    try:
        import torch
        result = base.EditResult.__new__(base.EditResult)
        result.delta, result.record = {"x": torch.zeros(1)}, {"format": base.FORMAT}
        result.inference_tensors = {}
        base.save_edit(result, edits / "abc")
    finally:
        base.tempfile.mkdtemp = real
    assert prefixes == [f".abc.tmp-{os.getpid()}-"]


def test_second_process_on_a_run_folder_is_refused_and_kill9_frees_the_lock(tmp_path, capsys):
    from bench.core.files import file_lock
    from bench.runner.store import RunStore
    out = tmp_path / "run"
    store = RunStore(out)
    out.mkdir()
    with file_lock(store.shard_lock((0, 1))):  # another open file: flock conflicts in-process too
        code, _, err = cli(capsys, "run", _tiny_suite(tmp_path), "--smoke", "--out", out, "--no-progress")
        assert_one_line_error(code, err, f"another eraselab process (pid {os.getpid()})",
                              "shard 0/1")
    assert not (out / "logs").exists()
    # a holder killed with SIGKILL: the kernel drops its flock, the lock file stays
    holder = ("import os, sys; sys.path.insert(0, %r); from bench.core.files import file_lock\n"
              "with file_lock(%r): os.kill(os.getpid(), 9)\n") % (str(REPO), str(store.shard_lock((0, 1))))
    proc = subprocess.run([sys.executable, "-c", holder], timeout=60)
    assert proc.returncode == -9 and store.shard_lock((0, 1)).is_file()
    with file_lock(store.shard_lock((0, 1))):
        pass


def test_edit_lock_waits_for_the_holder(tmp_path):
    from bench.core.files import file_lock
    from bench.runner.store import RunStore
    store = RunStore(tmp_path)
    lock = store.edit_lock("e1")
    holder = ("import sys, time; sys.path.insert(0, %r); from bench.core.files import file_lock\n"
              "with file_lock(%r):\n    print('held', flush=True); time.sleep(1.0)\n") % (str(REPO), str(lock))
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    t0 = time.perf_counter()
    with file_lock(lock, wait=True):
        waited = time.perf_counter() - t0
    proc.wait()
    assert waited > 0.3


def test_failed_model_load_leaves_no_run_folder(tmp_path, capsys):
    """A run that fails before any work (a model folder that does not load) leaves nothing."""
    suite = tmp_path / "bad-model.yaml"
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    suite.write_text(SUITE.format(catalog="miniworld").replace("path: miniworld", f"path: {broken}")
                     .replace("scorers: [clip-score, mapping]", "scorers: [clip-score]"))
    out = tmp_path / "run"
    code, _, err = cli(capsys, "run", suite, "--out", out, "--no-progress", "--device", "cpu")
    assert_one_line_error(code, err, str(broken))
    assert not out.exists()


# -- property-based fuzzing (hypothesis): seeded, 50 examples each, a few seconds in all -------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=50, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
YAML_TEXT = st.lists(st.sampled_from(list(":-[]{}&*!|>'\"#,?%@ \n\t") + ["a", "b", "x", "0", "1", ".",
                                                                         "~", "&a ", "*a", "<<: "]),
                     max_size=80).map("".join)
CATALOG_KEYS = ["name", "version", "concepts", "type", "parent", "related", "templates", "detector",
                "images", "label", "folder", "include", "suite", "methods", "models", "catalog",
                "prompt_sets", "sampler", "seeds", "scorers"]
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True)
                      | st.text(max_size=8) | st.sampled_from(["object", "instance", "{}", "a {}", "miniworld"]),
                      lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(CATALOG_KEYS) | st.text(max_size=5), inner, max_size=4),
                      max_leaves=25)


def _one_line_problems(problems) -> None:
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    for problem in problems:
        assert "\n" not in problem and len(problem) <= 2100


def _validate_text(text: str) -> list[str]:
    import tempfile

    from bench.commands.validate import problems_of
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        return problems_of(path)


@FUZZ
@given(YAML_TEXT)
def test_fuzz_yaml_text_is_valid_or_one_line_problems(text):
    import yaml

    from bench.core.yamlio import safe_load_text
    try:
        safe_load_text(text)
    except yaml.YAMLError:
        pass
    _one_line_problems(_validate_text(text))


@FUZZ
@given(st.dictionaries(st.sampled_from(CATALOG_KEYS), VALUES, max_size=6))
def test_fuzz_catalog_and_suite_mappings_give_one_line_problems(mapping):
    import yaml
    _one_line_problems(_validate_text(yaml.safe_dump(mapping)))


SET_KEYS = ["lam", "erase_scale", "preserve", "guide", "embedding", "steps", "lr", "k", "params", "x"]
SET_VALUES = st.sampled_from(["", "1", "-1", "0.5", "nan", "inf", "[a, b]", "[", "null", "true", "&a [*a]",
                              "{a: 1}", "mlp:layers=[0]", "layers=[9]", "1e-4", "x" * 300])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(SET_KEYS) | st.text(max_size=4),
                          SET_VALUES | st.text(max_size=12), st.booleans()), max_size=4),
       st.sampled_from(["uce", "fewshot-te"]))
def test_fuzz_set_parser_gives_a_config_or_one_line(pairs, method):
    from methods import METHODS
    from methods.erase import resolve_method_config
    from methods.config import parse_set_args
    args = [f"{k}={v}" if sep else f"{k}{v}" for k, v, sep in pairs]
    try:
        resolve_method_config(METHODS.get(method), "sd", None, parse_set_args(args))
    except EraselabError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= 2100
