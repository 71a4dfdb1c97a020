"""The related-concept mapping classifies each image in its concept type's label space.

A style's images are mapped among the catalog's styles plus "plain", an object's, instance's or
logo's among the non-style labels plus "nothing"; every row names its space (``mapping_space``)
and the report's mapping table says which space each row uses. On the real mini world, van gogh
renders land on "van gogh" in the styles space (over object labels they never did).

    python -m pytest tests/test_mapping_space.py -q
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.catalog import load_catalog
from bench.core.paths import MINIWORLD_DIR
from detectors import SCORERS
from detectors.mapping import ALL_LABELS, MIXED, mapping_analysis
from bench.labels import OBJECTS_SPACE, PLAIN, STYLES_SPACE, label_space, space_prompts
from tests.tiny_clip import register_tiny_clip

torch.set_num_threads(1)
TINY_CLIP = "eraselab-mapping-test-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16, "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog("miniworld")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return register_tiny_clip(tmp_path_factory.mktemp("clipcfg"), TINY_CLIP, TINY_CLIP_CONFIG)


def noise(n: int) -> list:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]


def test_the_space_follows_the_concept_type(catalog):
    assert label_space(catalog["van gogh"]) == STYLES_SPACE
    for name in ("church", "snoopy", "apple logo"):  # object, instance, logo
        assert label_space(catalog[name]) == OBJECTS_SPACE
    assert label_space(None) == OBJECTS_SPACE


def test_space_labels(catalog):
    styles = [c.name for c in catalog.of_type("style")]
    objects = [c.name for c in catalog.concepts.values() if not c.is_style]
    assert list(space_prompts(catalog, STYLES_SPACE)) == styles + [PLAIN]
    assert list(space_prompts(catalog, OBJECTS_SPACE, extra_labels=("cat",))) == objects + ["cat", "nothing"]
    # plain is the unstyled first prompt of every non-style concept; a style adds it styled
    prompts = space_prompts(catalog, STYLES_SPACE)
    assert prompts[PLAIN] == [catalog[o].prompts()[0] for o in objects]
    assert "a photo of a church in the style of van gogh" in prompts["van gogh"]
    assert set(catalog["van gogh"].prompts()) <= set(prompts["van gogh"])
    with pytest.raises(ValueError, match="unknown label space 'colours'"):
        space_prompts(catalog, "colours")


def test_each_row_is_mapped_in_its_concepts_space(tiny_clip, catalog):
    concepts = [catalog["van gogh"], catalog["church"], catalog["snoopy"], catalog["apple logo"], None,
                catalog["neon"]]
    rows = SCORERS.get("mapping")(clip_model=tiny_clip, extra_labels=["cat"]).score(
        noise(len(concepts)), [None] * len(concepts), concepts)
    styles = {c.name for c in catalog.of_type("style")} | {PLAIN}
    objects = {c.name for c in catalog.concepts.values() if not c.is_style} | {"cat", "nothing"}
    assert [r["mapping_space"] for r in rows] == ["styles", "objects", "objects", "objects", "objects",
                                                  "styles"]
    for row in rows:
        assert set(row["mapping_dist"]) == (styles if row["mapping_space"] == "styles" else objects)
        assert row["mapped_to"] == max(row["mapping_dist"], key=row["mapping_dist"].get)
        assert abs(sum(row["mapping_dist"].values()) - 1) < 1e-4
    # scoring a row alone gives what it got in a mixed batch (each space is its own softmax)
    alone = SCORERS.get("mapping")(clip_model=tiny_clip, extra_labels=["cat"]).score(
        noise(len(concepts))[:1], [None], concepts[:1])[0]
    assert alone["mapping_dist"] == pytest.approx(rows[0]["mapping_dist"], abs=1e-6)


def test_analysis_reports_the_rows_space(catalog):
    def row(phase, label, space):
        return {"concept": "van gogh", "phase": phase, "mapped_to": label, "mapping_dist": None,
                **({"mapping_space": space} if space is not ... else {})}

    [styled] = mapping_analysis([row("before", "van gogh", "styles")] * 3
                                + [row("after", "plain", "styles")] * 3, catalog)
    assert styled["space"] == "styles"
    assert styled["before_is_self"] and styled["self_share_drop"] == 1.0
    [old] = mapping_analysis([row("before", "apple", ...), row("after", "apple", float("nan"))], catalog)
    assert old["space"] == ALL_LABELS  # no column, or a parquet null: scored before spaces existed
    [mixed] = mapping_analysis([row("before", "van gogh", "styles"), row("after", "apple", "objects")],
                               catalog)
    assert mixed["space"] == MIXED


def _report_tables(run_dir):
    from reports.mapping import analyse_run
    from reports.metrics import summarize
    from reports.rundata import load_run
    from reports.tables import mapping_table
    run = load_run(run_dir)
    return mapping_table(analyse_run(run, summarize(run)))


def test_the_report_table_says_each_rows_space(tmp_path):
    from reports.render import to_markdown
    from reports.synthetic import make_run
    run_dir = make_run(tmp_path / "run", concepts=("snoopy",))
    table = _report_tables(run_dir)  # a run without the column: the version-1 space
    assert "space" in [c.key for c in table.columns] and "Label space" in to_markdown(table)
    assert {r["space"].value for r in table.rows} == {ALL_LABELS}

    results = pd.read_parquet(run_dir / "results.parquet")
    results["mapping_space"] = "objects"
    results.to_parquet(run_dir / "results.parquet", index=False)
    table = _report_tables(run_dir)
    assert table.rows and {r["space"].value for r in table.rows} == {"objects"}
    assert "| objects |" in to_markdown(table)


@pytest.mark.skipif(not (MINIWORLD_DIR / "clip" / "model.safetensors").is_file(),
                    reason="needs the mini-world CLIP weights (datasets/miniworld/v1/clip)")
def test_van_gogh_renders_map_to_van_gogh_among_styles(catalog):
    """32 van gogh renders of varied objects: most map to "van gogh" (measured: 19/32, mean
    p 0.59, on these seeds), where the object labels put p(van gogh) at 0.00 for all 32."""
    import bench.miniworld.render as mw
    concepts = list(mw.OBJECTS) + list(mw.INSTANCES)
    images = [Image.fromarray(mw.render(concepts[i % len(concepts)], "van gogh",
                                        mw.stable_seed("mapping-space", "held-out", "van gogh", i)).image)
              for i in range(32)]
    rows = SCORERS.get("mapping")().score(images, [None] * 32, [catalog["van gogh"]] * 32)
    counts = Counter(r["mapped_to"] for r in rows)
    assert {r["mapping_space"] for r in rows} == {"styles"}
    assert counts.most_common(1)[0][0] == "van gogh" and counts["van gogh"] > 16, counts
    plain = [Image.fromarray(mw.render(concepts[i % len(concepts)], "plain",
                                       mw.stable_seed("mapping-space", "held-out", "plain", i)).image)
             for i in range(16)]
    assert Counter(r["mapped_to"] for r in SCORERS.get("mapping")().score(
        plain, [None] * 16, [catalog["van gogh"]] * 16))[PLAIN] >= 14
