"""Tests of the mini-world renderer (bench/miniworld): run ``python -m pytest tests/test_renderer.py``.

They pin what other code relies on: determinism, shapes, boxes, errors, the caption grammar
(evaluation prompts never equal a training caption), agreement with the miniworld catalog,
write_renders' files, and a loose speed floor. The whole file runs in a few seconds.
"""

import json
import time

import numpy as np
import pytest
from PIL import Image

from bench.catalog import load_catalog
from bench.core.errors import EraselabError
from bench.miniworld.render import (BACKGROUNDS, COLOURS, INSTANCES, NOTHING, OBJECTS, STYLES,
                                    Sample, caption_tokens, random_sample, render, render_scene,
                                    stable_seed, write_renders)

ALL = list(OBJECTS) + list(INSTANCES)


def test_public_constants():
    assert len(OBJECTS) == 12 and len(INSTANCES) == 4
    assert STYLES == ("plain", "van gogh", "pixel art", "sketch", "neon")
    assert {"red", "green", "blue", "yellow", "orange", "purple"} <= set(COLOURS)
    assert len(BACKGROUNDS) >= 4
    assert all(parent in OBJECTS for parent in INSTANCES.values())


def test_stable_seed_is_stable():
    assert stable_seed("church", "plain", 3) == stable_seed("church", "plain", 3)
    assert stable_seed("church", "plain", 3) != stable_seed("church", "plain", 4)
    assert 0 <= stable_seed("x") < 2 ** 63


@pytest.mark.parametrize("style", STYLES)
def test_determinism(style):
    a, b = render("church", style, 7), render("church", style, 7)
    assert a.image.tobytes() == b.image.tobytes() and a.caption == b.caption
    assert render("church", style, 8).image.tobytes() != a.image.tobytes()


@pytest.mark.parametrize("concept", ALL + [NOTHING])
def test_every_concept_and_style_renders(concept):
    for style in STYLES:
        s = render(concept, style, 1)
        assert isinstance(s, Sample)
        assert s.image.dtype == np.uint8 and s.image.shape == (64, 64, 3)
        assert s.concept == concept and s.style == style
        json.dumps(s.attributes)


def test_other_size():
    assert render("tench", "neon", 0, size=32).image.shape == (32, 32, 3)


@pytest.mark.parametrize("concept", ALL)
def test_box_inside_and_around_object(concept):
    for seed in range(4):
        s = render(concept, "plain", seed)
        assert len(s.boxes) == 1
        label, x0, y0, x1, y1 = s.boxes[0]
        assert label == concept and all(isinstance(v, int) for v in (x0, y0, x1, y1))
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert (x1 - x0) * (y1 - y0) >= 36
        # The object is drawn inside its box: outside the box the picture equals the empty
        # background rendered with the same random draws, which we approximate by checking that
        # the box holds most of the pixels that differ from their neighbours' colour.
        img = s.image.astype(int)
        edges = (np.abs(np.diff(img, axis=1)).sum(axis=2) > 60)
        inside = edges[y0:y1, max(0, x0 - 1):x1].sum()
        assert inside >= 0.8 * edges.sum() - 30  # night stars may sit outside the box


def test_unknown_names_raise_one_line_error():
    with pytest.raises(EraselabError, match="unknown mini-world concept 'chruch'.*church") as e:
        render("chruch")
    assert "\n" not in str(e.value)
    with pytest.raises(EraselabError, match="unknown mini-world style"):
        render("church", "van gog")


def test_captions_short_and_named():
    for seed in range(300):
        s = random_sample(seed, p_style=0.5, p_nothing=0.05)
        assert len(s.caption.split()) <= 20, s.caption
        if s.concept != NOTHING:
            assert s.concept in s.caption, s.caption
        if s.style != "plain":
            assert s.style in s.caption, s.caption


def test_captions_fit_clip_budget():
    captions = [random_sample(i, p_style=0.5).caption for i in range(300)]
    captions += [render_scene(i).caption for i in range(100)]
    assert max(caption_tokens(c) for c in captions) <= 20
    assert max(len(c.split()) for c in captions) <= 20


def test_catalog_agreement():
    catalog = load_catalog("miniworld")
    objects = {c.name for c in catalog.of_type("object")}
    instances = {c.name for c in catalog.of_type("instance", "logo")}
    styles = {c.name for c in catalog.of_type("style")}
    assert objects == set(OBJECTS)
    assert instances == set(INSTANCES)
    assert styles == set(STYLES) - {"plain"}
    for c in catalog.of_type("instance", "logo"):
        assert INSTANCES[c.name] == c.parent
    for name in objects | instances:
        render(name, "plain", 0)
    for name in styles:
        render("apple", name, 0)


def test_evaluation_prompts_are_not_training_captions():
    catalog = load_catalog("miniworld")
    prompts = {p for c in catalog.concepts.values() for p in c.prompts()}
    captions = {random_sample(i).caption for i in range(2000)}
    captions |= {render_scene(i).caption for i in range(200)}
    assert not prompts & captions
    # Every word of the evaluation prompts is seen in training.
    vocab = {w.strip(",") for c in captions for w in c.split()}
    missing = {w for p in prompts for w in p.split()} - vocab
    assert not missing, missing


def test_render_scene_boxes():
    counts = set()
    for seed in range(30):
        s = render_scene(seed, max_objects=3)
        assert s.image.shape == (64, 64, 3) and 1 <= len(s.boxes) <= 3
        assert s.concept == s.boxes[0][0]
        counts.add(len(s.boxes))
        for label, x0, y0, x1, y1 in s.boxes:
            assert label in ALL and 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert len(counts) >= 2


def test_write_renders(tmp_path):
    records = write_renders("snoopy", "sketch", 3, 5, tmp_path / "few")
    files = sorted(p.name for p in (tmp_path / "few").iterdir())
    assert files == ["00000.png", "00001.png", "00002.png", "captions.jsonl"]
    lines = [json.loads(x) for x in (tmp_path / "few" / "captions.jsonl").read_text().splitlines()]
    assert lines == records and lines[1]["seed"] == stable_seed(5, 1)
    assert lines[0]["boxes"][0][0] == "snoopy" and lines[0]["style"] == "sketch"
    img = np.asarray(Image.open(tmp_path / "few" / "00001.png"))
    assert img.tobytes() == render("snoopy", "sketch", stable_seed(5, 1)).image.tobytes()


def test_speed_floor():
    names = ALL + [NOTHING]
    render("church", "van gogh", 0)  # warm the texture caches
    # CPU time of this process, not wall time: other work on the machine must not fail it.
    start, n = time.process_time(), 200
    for i in range(n):
        render(names[i % len(names)], STYLES[i % len(STYLES)], i)
    assert n / (time.process_time() - start) >= 200


def test_same_scene_in_every_style_pairs_renders():
    """One seed, two styles: the same scene (attributes, boxes) drawn differently; without the
    flag the style decides the scene too, as every cached training set was rendered."""
    plain = render("snoopy", "plain", 7, same_scene_in_every_style=True)
    neon = render("snoopy", "neon", 7, same_scene_in_every_style=True)
    assert plain.attributes == neon.attributes and plain.boxes == neon.boxes
    assert not np.array_equal(plain.image, neon.image)
    default = render("snoopy", "neon", 7)
    assert np.array_equal(default.image, render("snoopy", "neon", 7, same_scene_in_every_style=False).image)
    assert not np.array_equal(default.image, neon.image)


def test_style_pairs_are_twins(tmp_path):
    """render_style_pairs: styled renders (never plain) and plain twins of the same scenes,
    the same from the cache and in any number of workers."""
    from bench.miniworld.data import render_style_pairs, style_pair
    styled, twins = render_style_pairs(12, 3, cache_dir=tmp_path, progress=False)
    assert styled.images.shape == twins.shape == (12, 64, 64, 3)
    assert all(r["style"] != "plain" for r in styled.records)
    for i in range(3):
        concept, style, scene = style_pair(3, i)
        assert styled.records[i]["concept"] == concept and styled.records[i]["style"] == style
        assert np.array_equal(twins[i], render(concept, "plain", scene, same_scene_in_every_style=True).image)
    again, again_twins = render_style_pairs(12, 3, cache_dir=tmp_path, progress=False)
    parallel, parallel_twins = render_style_pairs(12, 3, progress=False, workers=2)
    assert np.array_equal(again.images, styled.images) and np.array_equal(again_twins, twins)
    assert np.array_equal(parallel.images, styled.images) and parallel.records == styled.records
