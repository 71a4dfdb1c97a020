"""Tests of the scorers in detectors/ on tiny random backends, with the network closed.

    pytest tests/test_scorers.py -q        # ~30 s on 2 cores

Tiny models stand in for the real ones so every code path runs offline: an open_clip custom
config registered with add_model_config, a YOLO built from yolov8n.yaml with 3 classes and saved
as .pt, timm's test_vit with pretrained=False. Quality on the trained mini-world models is tested in
tests/test_scorers_quality.py (skipped until those weights are installed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.catalog import load_catalog
from bench.core.errors import EraselabError
from detectors import SCORERS
from tests.tiny_clip import register_tiny_clip

TINY_CLIP = "eraselab-tiny-test-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
# The scorers that must be registered (a floor: the contract tests run on every registered one).
ALL_SCORERS = {"clip-score", "clip-zero-shot", "mapping", "yolo", "miniworld-yolo", "imagenet-classifier",
               "miniworld-style-probe", "clip-image-similarity", "kid-clip"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach the network fails loudly (weights, fonts, configs must stay local)."""
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a scorer test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    # ultralytics reads YOLO_CONFIG_DIR once, at import: set the eraselab cache before any test.
    path = tmp_path_factory.mktemp("eraselab-cache")
    os.environ.setdefault("ERASELAB_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return register_tiny_clip(tmp_path_factory.mktemp("clipcfg"), TINY_CLIP, TINY_CLIP_CONFIG)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog("miniworld")


def random_images(n: int, seed: int = 0, size: int = 64) -> list:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def solid_images(n: int, colour=(200, 30, 30), size: int = 64) -> list:
    return [Image.new("RGB", (size, size), colour) for _ in range(n)]


# -- interface and registration ----------------------------------------------------------------
def test_every_scorer_is_registered_lazily_and_listing_imports_nothing_heavy():
    assert ALL_SCORERS <= set(SCORERS.names())
    code = "import sys, detectors; print(sorted(detectors.SCORERS.names())); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "False"


def test_importing_ultralytics_keeps_torchs_threads(tmp_path):
    """ultralytics sets OMP_NUM_THREADS=1 on import; after setup_ultralytics_offline a torch that
    starts its thread pool later must still get its default thread count."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["ERASELAB_CACHE"] = str(tmp_path)
    plain = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True, env=env).stdout.split()[-1]
    code = ("import torch\nfrom bench.offline import setup_ultralytics_offline\n"
            "setup_ultralytics_offline()\nimport ultralytics\nprint(torch.get_num_threads())")
    after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env=env, cwd=Path(__file__).resolve().parents[1]).stdout.split()[-1]
    assert after == plain


def test_eraselab_ls_detectors_lists_every_scorer():
    pytest.importorskip("bench.commands.ls", reason="the ls command is not built yet")
    out = subprocess.run([sys.executable, "-m", "bench.cli", "ls", "detectors"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    for name in ALL_SCORERS:
        assert name in out.stdout


@pytest.mark.parametrize("name", sorted(set(SCORERS.names()) | ALL_SCORERS))
def test_scorer_class_declares_name_version_kind_and_columns(name):
    cls = SCORERS.get(name)
    assert cls.name == name
    assert isinstance(cls.version, str) and cls.version
    assert cls.kind in ("image", "pair", "set")
    assert cls.columns
    assert SCORERS.entry(name).tags["kind"] == cls.kind


# -- CLIP: clip-score, zero-shot, mapping, preservation ------------------------------------------
def test_clip_scorers_on_tiny_clip(tiny_clip, catalog):
    images = random_images(5)
    concepts = [catalog["church"], catalog["snoopy"], catalog["van gogh"], None, catalog["tower"]]
    prompts = ["a photo of a church", "a photo of snoopy", "a painting in the style of van gogh", None,
               "a tower"]
    rows = SCORERS.get("clip-score")(clip_model=tiny_clip).score(images, prompts, concepts)
    assert len(rows) == 5 and rows[3]["clip_score"] is None
    assert all(-1 <= r["clip_score"] <= 1 for r in rows if r["clip_score"] is not None)
    assert rows[0]["clip-score.version"] == "1" and rows[0]["clip-score.backend"] == tiny_clip

    zs = SCORERS.get("clip-zero-shot")(clip_model=tiny_clip).score(images, prompts, concepts)
    styles = {c.name for c in catalog.of_type("style")} | {"nothing"}
    assert zs[2]["zs_label"] in styles  # a style concept competes only with styles
    assert zs[3]["detected"] is None and isinstance(zs[0]["detected"], bool)

    mapped = SCORERS.get("mapping")(clip_model=tiny_clip, extra_labels=["cat"]).score(images, prompts, concepts)
    objects = {c.name for c in catalog.concepts.values() if not c.is_style} | {"cat", "nothing"}
    for row, concept in zip(mapped, concepts):  # a style among styles + plain (tests/test_mapping_space.py)
        is_style = concept is not None and concept.is_style
        assert set(row["mapping_dist"]) == (styles - {"nothing"} | {"plain"} if is_style else objects)
        assert abs(sum(row["mapping_dist"].values()) - 1) < 1e-4
        assert row["mapped_p"] == max(row["mapping_dist"].values())
        assert row["mapping_dist"][row["mapped_to"]] == row["mapped_p"]


def test_batching_gives_the_same_scores(tiny_clip):
    images, prompts = random_images(7), ["a photo of a church"] * 7
    one = SCORERS.get("clip-score")(clip_model=tiny_clip, batch_size=64).score(images, prompts)
    many = SCORERS.get("clip-score")(clip_model=tiny_clip, batch_size=3).score(images, prompts)
    assert [r["clip_score"] for r in one] == pytest.approx([r["clip_score"] for r in many], abs=1e-5)


def test_clip_image_similarity_pairs(tiny_clip):
    a, b = random_images(3, seed=1), random_images(3, seed=2)
    scorer = SCORERS.get("clip-image-similarity")(clip_model=tiny_clip)
    same = scorer.score(a, a)
    assert [r["clip_image_cosine"] for r in same] == pytest.approx([1.0] * 3, abs=1e-5)
    with pytest.raises(EraselabError, match="twin"):
        scorer.score(a, b[:2])


def test_kid_clip_scorer_on_tiny_clip(tiny_clip):
    scorer = SCORERS.get("kid-clip")(clip_model=tiny_clip, subsets=10)
    out = scorer.score(random_images(6, seed=1), random_images(6, seed=2))
    assert out["kid_subset_size"] == 3 and out["fid_clip"] is None  # n=6 <= 32 feature dims
    assert out["kid-clip.version"] == "2"


def test_miniworld_clip_loader_reads_shipped_layout(tiny_clip, tmp_path):
    """The default backend's loader: config + fp16 safetensors + SHA256SUMS, open_clip's own loading."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from bench.miniworld.weights import record_checksums
    from detectors.clip_backend import load_clip

    model = open_clip.create_model(tiny_clip, pretrained=None)
    (tmp_path / "clip").mkdir()
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "clip" / "model.safetensors"))
    config = {"model_name": "miniworld-clip", **TINY_CLIP_CONFIG}
    (tmp_path / "clip" / "open_clip_config.json").write_text(json.dumps(config))
    record_checksums(["clip/model.safetensors", "clip/open_clip_config.json"], root=tmp_path)

    backend = load_clip("miniworld-clip", None, "cpu", str(tmp_path))
    assert backend.label == "miniworld-clip"
    assert load_clip("miniworld-clip", None, "cpu", str(tmp_path)) is backend  # cached per process
    expected = model.half().float().eval()
    x = backend.image_tensor(random_images(2))
    with torch.no_grad():
        ref = expected.encode_image(x)
    ref = ref / ref.norm(dim=-1, keepdim=True)
    assert torch.allclose(backend.encode_image_tensor(x), ref, atol=1e-4)
    load_clip.cache_clear()


def test_open_clip_pretrained_local_file(tiny_clip, tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from detectors.clip_backend import load_clip

    model = open_clip.create_model(tiny_clip, pretrained=None)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    backend = load_clip(tiny_clip, str(path), "cpu")
    assert backend.label == f"{tiny_clip}/{path}"
    with pytest.raises(EraselabError, match="not found"):
        load_clip(tiny_clip, str(tmp_path / "absent.pt"), "cpu")


def test_default_backend_without_weights_is_a_one_line_error(monkeypatch, tmp_path):
    import bench.core.paths
    from detectors.clip_backend import load_clip
    monkeypatch.setattr(bench.core.paths, "MINIWORLD_DIR", tmp_path)
    load_clip.cache_clear()
    with pytest.raises(EraselabError) as err:
        SCORERS.get("clip-score")().score(random_images(1), ["a church"])
    assert "mini-world" in str(err.value) and "\n" not in str(err.value)


# -- YOLO ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_yolo(tmp_path_factory, cache_dir):
    from bench.offline import setup_ultralytics_offline
    config_dir = setup_ultralytics_offline()
    assert (config_dir / "Ultralytics" / "Arial.ttf").is_file()
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel
    torch.manual_seed(0)
    yolo = YOLO("yolov8n.yaml")
    yolo.model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    yolo.model.names = {0: "church", 1: "snoopy", 2: "tower"}
    path = tmp_path_factory.mktemp("yolo") / "tiny.pt"
    yolo.save(str(path))
    return path


def test_yolo_detector_on_tiny_weights(tiny_yolo, catalog):
    from dataclasses import replace
    church = replace(catalog["church"], detector={"name": "yolo", "label": "church"})
    scorer = SCORERS.get("yolo")(weights=str(tiny_yolo), threshold=0.001, imgsz=64)
    images = random_images(4)
    rows = scorer.score(images, ["a church"] * 4, [church, catalog["snoopy"], catalog["van gogh"], None])
    assert len(rows) == 4
    for row in rows:
        assert len(row["det_labels"]) == len(row["det_confidences"])
        assert set(row["det_labels"]) <= {"church", "snoopy", "tower"}
    assert rows[0]["detected"] == ("church" in rows[0]["det_labels"])
    assert rows[1]["detected"] == ("snoopy" in rows[1]["det_labels"])  # label known to the detector
    assert rows[2]["detected"] is None and rows[3]["detected"] is None  # a style; no concept
    bad = replace(catalog["tench"], detector={"name": "yolo", "label": "tench"})
    with pytest.raises(EraselabError, match="no class 'tench'"):
        scorer.score(images[:1], ["x"], [bad])


def test_yolo_scoring_leaves_torchs_thread_count_alone(tiny_yolo, catalog):
    """ultralytics' predict sets torch.set_num_threads(cpu_count - 1); the scorer restores it."""
    import torch
    from detectors import SCORERS
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # a value ultralytics would never pick on its own
    try:
        SCORERS.get("yolo")(weights=str(tiny_yolo), imgsz=64).score(random_images(2), ["a", "b"], [None, None])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_yolo_missing_weights_is_an_error(tmp_path):
    with pytest.raises(EraselabError, match="not found"):
        SCORERS.get("yolo")(weights=str(tmp_path / "none.pt")).score(random_images(1))


# -- timm ImageNet classifier -----------------------------------------------------------------
def test_imagenet_classifier_on_tiny_timm(catalog):
    scorer = SCORERS.get("imagenet-classifier")(model="test_vit", pretrained=False)
    rows = scorer.score(random_images(3), ["a church"] * 3, [catalog["church"], catalog["tower"], None])
    assert 0 <= rows[0]["imagenet_top1"] < 1000
    assert rows[0]["detected"] == (rows[0]["imagenet_top1"] == 497)
    assert 0 <= rows[0]["concept_score"] <= rows[0]["imagenet_top1_p"] <= 1
    assert rows[1]["detected"] is None and rows[2]["detected"] is None  # tower: no imagenet_id
    assert rows[0]["imagenet-classifier.backend"] == "test_vit/random"


# -- style probe -----------------------------------------------------------------------------
def synthetic_style_features(n_per_class: int = 40, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = ["neon", "plain", "sketch", "van gogh"]
    centres = rng.normal(size=(len(classes), dim)) * 3
    features = np.concatenate([c + rng.normal(size=(n_per_class, dim)) for c in centres])
    labels = [c for c in classes for _ in range(n_per_class)]
    return features, labels, centres, classes


def test_style_probe_fit_save_load_without_pickle(tmp_path):
    from detectors.style_probe import StyleProbe, fit_style_probe
    features, labels, centres, classes = synthetic_style_features()
    probe = fit_style_probe(features, labels, meta={"clip": "test"})
    predictions = probe.predict(features)
    accuracy = np.mean([(p if p != "nothing" else "plain") == l for (p, _), l in zip(predictions, labels)])
    assert accuracy > 0.95
    files = probe.save(tmp_path / "probe")
    assert sorted(f.name for f in files) == ["probe.json", "probe.safetensors"]
    for f in files:
        assert b"\x80\x04" not in f.read_bytes()[:2]  # not a pickle stream
    loaded = StyleProbe.load(tmp_path / "probe")
    assert loaded.classes == classes and loaded.meta == {"clip": "test"}
    assert np.allclose(loaded.predict_proba(features), probe.predict_proba(features), atol=1e-5)
    # sklearn's own probabilities match the stored-weights re-implementation
    from sklearn.linear_model import LogisticRegression  # noqa: F401  (fit above used it)


def test_style_probe_nothing_outcome_and_binary_case():
    from detectors.style_probe import fit_style_probe
    features, labels, centres, _ = synthetic_style_features()
    probe = fit_style_probe(features, labels, threshold=0.99)
    # the mean of all centres is far from every class: low confidence -> "nothing"
    label, p = probe.predict(centres.mean(0, keepdims=True))[0]
    assert label == "nothing" or p >= 0.99
    assert probe.predict(centres[1:2])[0][0] == "nothing"  # "plain" reads as nothing recognisable
    keep = [i for i, l in enumerate(labels) if l in ("neon", "sketch")]
    binary = fit_style_probe(features[keep], [labels[i] for i in keep], threshold=0.5)
    assert binary.coef.shape[0] == 1
    assert binary.predict(centres[0:1])[0][0] == "neon" and binary.predict(centres[2:3])[0][0] == "sketch"


def test_style_probe_scorer_with_tiny_clip(tiny_clip, catalog, tmp_path):
    from detectors.clip_backend import load_clip
    from detectors.style_probe import fit_style_probe
    clip = load_clip(tiny_clip, None, "cpu")
    images = solid_images(6, (255, 0, 0)) + solid_images(6, (0, 0, 255))
    labels = ["neon"] * 6 + ["sketch"] * 6
    fit_style_probe(clip.encode_images(images).numpy(), labels).save(tmp_path / "p")
    scorer = SCORERS.get("miniworld-style-probe")(clip_model=tiny_clip, probe_dir=str(tmp_path / "p"))
    rows = scorer.score(images[:1] + images[-1:], ["x", "y"], [catalog["neon"], catalog["church"]])
    assert rows[0]["style_pred"] == "neon" and rows[0]["detected"] is True
    assert rows[1]["detected"] is None  # not a style concept


def test_style_probe_load_errors(tmp_path):
    from detectors.style_probe import StyleProbe
    with pytest.raises(EraselabError, match="not found"):
        StyleProbe.load(tmp_path)


# -- mapping analysis ------------------------------------------------------------------------
def test_mapping_analysis_known_answers(catalog):
    from detectors.mapping import mapping_analysis, summarize_mapping
    before = [{"concept": "snoopy", "phase": "before", "mapped_to": "snoopy",
               "mapping_dist": {"snoopy": 0.9, "english springer": 0.1}}] * 4
    after = ([{"concept": "snoopy", "phase": "after", "mapped_to": "english springer",
               "mapping_dist": {"snoopy": 0.1, "english springer": 0.8, "tench": 0.1}}] * 2
             + [{"concept": "snoopy", "phase": "after", "mapped_to": "tench",
                 "mapping_dist": {"snoopy": 0.1, "english springer": 0.3, "tench": 0.6}}]
             + [{"concept": "snoopy", "phase": "after", "mapped_to": "nothing",
                 "mapping_dist": {"nothing": 1.0}}])
    [row] = mapping_analysis(before + after, catalog)
    assert row["before_top_label"] == "snoopy" and row["before_is_self"] and row["before_entropy_bits"] == 0
    assert row["after_top_label"] == "english springer"
    assert row["after_top_share"] == 0.5
    assert row["after_is_parent"] and row["after_is_related"] and not row["after_is_self"]
    assert row["after_entropy_bits"] == pytest.approx(1.5)  # {1/2, 1/4, 1/4}
    assert row["after_top_mean_p"] == pytest.approx((0.8 * 2 + 0.3) / 4)
    assert row["self_share_drop"] == 1.0
    uniform = summarize_mapping(["a", "b", "c", "d"])
    assert uniform["entropy_bits"] == pytest.approx(2.0) and uniform["top_label"] == "a"


# -- KID / FID -------------------------------------------------------------------------------
def test_kid_of_a_set_against_itself_is_zero_and_grows_with_difference():
    import torch
    from detectors.preservation import kid_fid
    torch.manual_seed(0)

    class RandomFeatures(torch.nn.Module):
        num_features = 8

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3 * 8 * 8, 8)

        def forward(self, x):
            return self.proj(x.flatten(1))

    feature = RandomFeatures().eval()
    a = torch.rand(40, 3, 8, 8)
    b = torch.rand(40, 3, 8, 8) * 0.5 + 0.5  # a clearly different distribution
    same = kid_fid(a, a.clone(), feature, subsets=20)
    diff = kid_fid(a, b, feature, subsets=20)
    # KID is an unbiased estimate: ~0 (slightly negative) for identical sets, not exactly 0
    assert abs(same["kid_clip"]) < 0.2 * diff["kid_clip"] and same["fid_clip"] == pytest.approx(0, abs=1e-6)
    assert diff["kid_clip"] > 0.01 and diff["fid_clip"] > 0.1
    assert kid_fid(a, b, feature, subsets=20) == diff  # seeded subsets: reproducible
    assert diff["kid_subset_size"] == 20 and diff["kid_clip_std"] > 0  # subsets differ: a real spread
    small = kid_fid(a[:5], b[:7], feature, subsets=5)
    assert small["kid_subset_size"] == 2 and small["fid_clip"] is None  # n <= 8 dims: no FID
    with pytest.raises(EraselabError, match="at least 2"):
        kid_fid(a[:1], b, feature)


# -- bad inputs ------------------------------------------------------------------------------
def test_load_images_errors_are_one_line_and_name_the_file(tmp_path):
    from detectors.base import load_images
    good = tmp_path / "good.png"
    random_images(1)[0].save(good)
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    random_images(1, size=32)[0].save(tmp_path / "small.png")
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(good.read_bytes()[:100])
    assert load_images([good], size=64)[0].size == (64, 64)
    for name, pattern in [("missing.png", "not found"), ("bad.png", "not a readable image"),
                          ("trunc.png", "not a readable image"), ("small.png", "32x32, expected 64x64")]:
        with pytest.raises(EraselabError, match=pattern) as err:
            load_images([good, tmp_path / name], size=64)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_score_rejects_non_images(tiny_clip):
    with pytest.raises(EraselabError, match="#1"):
        SCORERS.get("clip-score")(clip_model=tiny_clip).score([random_images(1)[0], None], ["a", "b"])


# -- the score command -----------------------------------------------------------------------
@pytest.fixture
def image_folder(tmp_path):
    for i, image in enumerate(random_images(3)):
        image.save(tmp_path / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "txt"])
def test_score_cli_formats(tiny_clip, image_folder, capsys, fmt):
    from bench.cli import main
    rows = [("0.png", "a photo of a church", "church"), ("1.png", "a photo of snoopy", "snoopy"),
            ("2.png", "a scene", "")]
    path = image_folder / f"prompts.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps({"image": i, "prompt": p, "concept": c or None})
                                  for i, p, c in rows))
    elif fmt == "csv":
        path.write_text("image,prompt,concept\n" + "\n".join(",".join(r) for r in rows))
    else:
        path.write_text("\n".join("\t".join(r if r[2] else r[:2]) for r in rows))
    code = main(["score", str(image_folder), "--prompts", str(path), "--scorers", "clip-score,mapping",
                 "--clip-model", tiny_clip, "--json", "--size", "64"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    records = [json.loads(line) for line in out]
    assert [r["image"] for r in records] == ["0.png", "1.png", "2.png"]
    assert records[2]["concept"] is None
    assert all("clip_score" in r and "mapped_to" in r for r in records)
    code = main(["score", str(image_folder), "--prompts", str(path), "--scorers", "clip-score",
                 "--clip-model", tiny_clip])
    table = capsys.readouterr().out
    assert code == 0 and "clip_score" in table and "clip-score@1" in table


def test_score_cli_errors(tiny_clip, image_folder, capsys):
    from bench.cli import main
    prompts = image_folder / "p.txt"
    prompts.write_text("0.png\ta church\nmissing.png\ta tower\n")
    assert main(["score", str(image_folder), "--prompts", str(prompts), "--scorers", "clip-score",
                 "--clip-model", tiny_clip]) == 1
    err = capsys.readouterr().err
    assert "missing.png: image file not found" in err and err.count("\n") == 1
    assert main(["score", str(image_folder), "--prompts", str(prompts), "--scorers", "clip-scor"]) == 2
    assert "did you mean 'clip-score'" in capsys.readouterr().err
    assert main(["score", str(image_folder), "--prompts", str(image_folder / "p.yaml")]) == 1
    assert main(["score", str(image_folder), "--prompts", str(prompts), "--scorers", "kid-clip"]) == 2
    assert "--originals" in capsys.readouterr().err


def test_score_cli_with_originals_runs_pair_and_set_scorers(tiny_clip, image_folder, tmp_path, capsys):
    from bench.cli import main
    originals = tmp_path / "originals"
    originals.mkdir()
    for i, image in enumerate(random_images(3)):
        (image_folder / f"{i}.png").rename(originals / f"{i}.png") if i == 0 else image.save(originals / f"{i}.png")
    prompts = tmp_path / "p.txt"
    prompts.write_text("1.png\ta church\n2.png\ta tower\n")
    args = ["score", str(image_folder), "--prompts", str(prompts), "--clip-model", tiny_clip,
            "--originals", str(originals)]
    assert main(args + ["--scorers", "clip-score,clip-image-similarity,kid-clip", "--json"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    per_image, sets = lines[:2], lines[2:]
    assert all(-1.0 <= r["clip_image_cosine"] <= 1.0 for r in per_image)
    assert len(sets) == 1 and sets[0]["scope"] == "set" and sets[0]["scorer"] == "kid-clip" and "kid_clip" in sets[0]
    # Twins identical to the edited images: similarity 1 (the pairing is by file name).
    for name in ("1.png", "2.png"):
        (originals / name).write_bytes((image_folder / name).read_bytes())
    assert main(args + ["--scorers", "clip-image-similarity", "--json"]) == 0
    assert all(abs(json.loads(l)["clip_image_cosine"] - 1) < 1e-5 for l in capsys.readouterr().out.splitlines())
    (originals / "2.png").unlink()
    assert main(args + ["--scorers", "clip-image-similarity"]) == 1
    err = capsys.readouterr().err
    assert "2.png: image file not found" in err and err.count("\n") == 1


def test_zero_shot_prompts_ensemble_styles_and_use_the_catalogs_nothing_phrases(catalog):
    """One prompt set for the scorers and the mini-world model card (bench/miniworld/clip_model)."""
    from bench.labels import NOTHING, NOTHING_PROMPTS, zero_shot_prompts
    prompts = zero_shot_prompts(catalog, extra_labels=("dog",))
    church = catalog["church"]
    assert prompts["church"][:len(church.templates)] == church.prompts()
    assert f"{church.prompts()[0]} in the style of van gogh" in prompts["church"]
    assert prompts["van gogh"] == catalog["van gogh"].prompts()  # styles are not re-styled
    assert prompts["dog"] == ["a photo of a dog"]
    assert prompts[NOTHING] == list(catalog.nothing_prompts) and "random blobs" in prompts[NOTHING]
    assert list(prompts)[-1] == NOTHING
    bare = dataclasses.replace(catalog, nothing_prompts=())
    assert zero_shot_prompts(bare)[NOTHING] == list(NOTHING_PROMPTS)
    assert NOTHING not in zero_shot_prompts(catalog, nothing=False)
