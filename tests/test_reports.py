"""Tests of ``eraselab report`` on a synthetic run directory (reports/synthetic.py; no model, no GPU).

    pytest tests/test_reports.py -q        # ~30 s on 2 cores; installs Debian's chromium if missing

Checks that every table and figure is written, that table numbers equal numbers computed
directly from results.parquet, that the three renderings agree, that --compare flags a
regression, that missing inputs are one-line errors leaving nothing behind, and that the HTML
report opens in headless Chromium with no console error or failed request, user strings
escaped (a concept named <script>alert(1)</script> renders as text) and a non-blank screenshot.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.core.errors import EraselabError
from bench.core.stats import hierarchical_bootstrap
from reports.build import build_report
from reports.metrics import summarize
from reports.render import tex_escape, to_html, to_latex, to_markdown
from reports.rundata import load_run
from reports.synthetic import make_run
from reports.tables import Cell, Column, Table, fmt_number, main_table
from tests.browser import find_or_install_chromium, open_page

EVIL = "<script>alert(1)</script>"
FIGURES = ("tradeoff", "mapping", "cost", "grid-01-snoopy", "grid-02-script-alert-1-script", "judges-02-thresholds")


@pytest.fixture(scope="session")
def chromium():
    return find_or_install_chromium()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    # One run serves every test (reports take seconds): the second concept's name is an HTML
    # injection, which the browser test checks renders as text.
    # 16 samples x 2 target prompts: enough pairs for a verdict to survive the FDR control.
    return make_run(tmp_path_factory.mktemp("run") / "synthetic", concepts=("snoopy", EVIL),
                    run_name=f"run {EVIL}", samples=16)


@pytest.fixture(scope="module")
def cli_report(run_dir, tmp_path_factory):
    """The report written by the CLI, with what it printed (capsys is per test, so capture by hand)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("out") / "report"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["report", str(run_dir), "--out", str(out)])
    return code, buffer.getvalue(), out


def test_cli_writes_every_table_and_figure_and_prints_the_path(cli_report):
    code, printed, out = cli_report
    assert code == 0
    assert printed.strip().splitlines()[-1] == str(out / "index.html")
    for name in ("index.html", "report.md", "report.tex", "tables/main.md", "tables/main.tex",
                 "tables/overview.md", "tables/overview.tex",
                 "tables/mapping.md", "tables/mapping.tex"):
        assert (out / name).is_file(), name
    for name in FIGURES:
        with Image.open(out / "figures" / f"{name}.png") as im:
            assert im.width > 300 and im.height > 200
            assert np.asarray(im.convert("L")).std() > 5, f"{name}.png is blank"
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not list(out.parent.glob(".report.*")), "temporary build folders left behind"


def _expected(df: pd.DataFrame, method: str, concept: str, prompt_set: str, column: str):
    sel = df[(df.method == method) & (df.concept == concept) & (df.prompt_set == prompt_set)]
    return hierarchical_bootstrap(sel[column].astype(float).to_numpy(), sel["suite_seed"].to_numpy())


def test_table_numbers_equal_values_computed_from_rows(run_dir):
    df = pd.read_parquet(run_dir / "results.parquet")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    agg = pd.read_parquet(run_dir / "aggregates.parquet")
    table = main_table(summarize(load_run(run_dir)))
    assert len(table.rows) == df.groupby(["method", "concept"]).ngroups
    checked = 0
    for row in table.rows:
        method, concept = row["_method"], row["concept"].value
        for key, prompt_set, column in (("det_target", "target", "detected"), ("det_related", "related", "detected"),
                                        ("det_unrelated", "unrelated", "detected"),
                                        ("clip_target", "target", "clip_score"),
                                        ("clip_unrelated", "unrelated", "clip_score"),
                                        ("sim_unrelated", "unrelated", "clip_image_cosine")):
            value, lo, hi = _expected(df, method, concept, prompt_set, column)
            # The plain mean, independently of the bootstrap code path:
            raw = df[(df.method == method) & (df.concept == concept) & (df.prompt_set == prompt_set)][column]
            cell = row[key]
            if method == "original" and key == "sim_unrelated":
                assert cell.missing  # no same-seed twin for the original itself
                continue
            assert cell.value == pytest.approx(raw.astype(float).mean())
            assert (cell.lo, cell.hi) == pytest.approx((lo, hi))
            checked += 1
        if method != "original":
            edit = manifest["edits"][f"{method}-{concept}"]
            assert row["seconds"].value == edit["seconds"]
            assert row["params_changed"].value == edit["params_changed"]
            assert row["delta_bytes"].value == edit["delta_bytes"]
            kid = agg[(agg.method == method) & (agg.concept == concept) & (agg.prompt_set == "unrelated")
                      & (agg.metric == "kid")]
            assert row["kid_unrelated"].value == pytest.approx(float(kid.value.iloc[0]))
        else:
            assert row["seconds"].missing and row["params_changed"].missing and row["delta_bytes"].missing
    assert checked > 40
    # The general unrelated prompt has no subject, hence no detection: it is left out, not a miss.
    general = df[(df.prompt_set == "unrelated") & df.subject.isna()]
    assert len(general) and general.detected.isna().all()


def test_overview_has_one_row_per_method_with_the_main_tables_numbers(run_dir):
    import statistics

    from reports.tables import overview_table
    summary = summarize(load_run(run_dir))
    main, overview = main_table(summary), overview_table(summary)
    assert [r["method"].value for r in overview.rows] == [summary.labels[k] for k in summary.methods]
    by_method = {}
    for row in main.rows:
        by_method.setdefault(row["_method"], []).append(row)
    for row in overview.rows:
        rows = by_method[row["_method"]]
        for i, concept in enumerate(summary.concepts):
            source = next(r for r in rows if r["concept"].value == concept)
            assert row[f"target_{i}"].value == source["det_target"].value
            assert (row[f"target_{i}"].lo, row[f"target_{i}"].hi) == (source["det_target"].lo, source["det_target"].hi)
        if row["_method"] == "original":
            assert row["erased"].value == "" and row["seconds"].missing
            continue
        erased = sum(r["_erased"] for r in rows)
        assert row["erased"].value == f"{erased} of {len(rows)}"
        assert row["seconds"].value == statistics.median(r["seconds"].value for r in rows)
        assert row["delta_bytes"].value == statistics.median(r["delta_bytes"].value for r in rows)
    # The synthetic fewshot-te erases both concepts and noop neither: the counts can tell them apart.
    counts = {r["_method"]: r["erased"].value for r in overview.rows}
    assert counts["fewshot-te"] == "2 of 2" and counts["noop"] == "0 of 2"


def test_column_names_follow_the_runner_schema():
    from reports import rundata as rd
    schema = pytest.importorskip("bench.core.schema")
    used = rd.IDENTITY_COLUMNS + rd.SCORE_COLUMNS + (rd.EDIT_ID, rd.MAPPING_DIST, rd.SUITE_SEED)
    assert set(used) <= set(schema.ROW_COLUMNS)
    assert set(rd.PROMPT_SETS) == set(schema.PROMPT_SETS)


def test_rendered_tables_show_the_same_numbers(cli_report, run_dir):
    _, _, out = cli_report
    df = pd.read_parquet(run_dir / "results.parquet")
    md = (out / "tables/main.md").read_text()
    tex = (out / "tables/main.tex").read_text()
    html = (out / "index.html").read_text()
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    md_rows = [line for line in md.splitlines() if line.startswith("| ") and "%" in line]
    tex_rows = [line for line in tex.splitlines() if line.endswith(r"\\") and r"\%" in line]
    order = df[["concept", "method"]].drop_duplicates().values.tolist()
    assert len(md_rows) == len(tex_rows) == len(order)
    header = next(line for line in md.splitlines() if line.startswith("| Concept"))
    clip_at = [c.strip() for c in header.strip()[1:-1].split("|")].index("CLIP score, unrelated \u2191")
    for (concept, method), md_row, tex_row in zip(order, md_rows, tex_rows):
        sel = df[(df.method == method) & (df.concept == concept)]
        rate = sel[sel.prompt_set == "target"].detected.astype(float).mean()
        clip = sel[sel.prompt_set == "unrelated"].clip_score.mean()
        md_cells = [c.strip().replace("**", "") for c in re.split(r"(?<!\\)\|", md_row.strip()[1:-1])]
        assert md_cells[1] == method
        assert md_cells[2].startswith(fmt_number(rate, "pct")) and md_cells[clip_at].startswith(f"{clip:.3f}")
        tex_cells = [c.strip() for c in tex_row.removesuffix(r"\\").split(" & ")]
        assert fmt_number(rate, "pct").replace("%", r"\%") in tex_cells[2]
        assert f"{clip:.3f}" in tex_cells[clip_at]
        assert f"{clip:.3f}" in html


def test_best_per_column_is_marked_among_erasing_methods(run_dir):
    table = main_table(summarize(load_run(run_dir)))
    for concept in ("snoopy", EVIL):
        rows = [r for r in table.rows if r["concept"].value == concept and r["_method"] != "original"]
        lowest = min(r["det_target"].value for r in rows)
        assert [r["det_target"].best for r in rows] == [r["det_target"].value == lowest for r in rows]
        for r in rows:
            if r["_method"] == "noop":  # failed to erase: never "best" at preserving what it never touched
                assert not any(r[k].best for k in ("det_unrelated", "sim_unrelated", "seconds"))
    assert not any(cell.best for r in table.rows if r["_method"] == "original"
                   for key, cell in r.items() if isinstance(cell, Cell))


def test_mapping_table_matches_the_rows(cli_report, run_dir):
    _, _, out = cli_report
    df = pd.read_parquet(run_dir / "results.parquet")
    md = (out / "tables/mapping.md").read_text()
    assert "&lt;script&gt;" in md and "<script" not in md  # Markdown renders raw HTML: escaped
    for concept in ("snoopy",):
        after = df[(df.method == "fewshot-te") & (df.concept == concept) & (df.prompt_set == "target")]
        top, count = Counter(after.mapped_to).most_common(1)[0]
        row = next(line for line in md.splitlines() if "fewshot-te" in line and f"{100 * count / len(after):.0f}%" in line)
        assert top in row and "english springer" in row


def test_summary_says_who_erased_what_and_who_failed(cli_report):
    _, _, out = cli_report
    html = (out / "index.html").read_text()
    summary = html[html.index('id="summary"'):html.index('id="tables"')]
    assert re.search(r"fewshot-te cut snoopy detection from \d+% to \d+% \(change -\d+ pt \[[^]]+\], "
                     r"adjusted p [^)]+\) in 2\.1 s", summary)
    assert "noop did NOT erase snoopy" in summary and 'class="failed"' in summary
    assert "Smoke test" in summary  # 32 images per group is below the protocol's 64
    assert "McNemar" in summary and "Benjamini-Hochberg" in summary  # the method note


def test_three_renderings_of_one_table_agree():
    cols = [Column("c", "Concept"), Column("rate", "Rate", "pct", "lower")]
    rows = [{"c": Cell("a|b_c"), "rate": Cell(0.12, 0.05, 0.20)}, {"c": Cell("d"), "rate": Cell(0.5, 0.4, 0.6)}]
    from reports.tables import mark_best
    table = Table("t", "T", "caption & 100%", cols, rows)
    mark_best(table)
    md, tex, html = to_markdown(table), to_latex(table), to_html(table)
    assert "**12%** [5, 20]" in md and "a\\|b\\_c" in md
    assert r"\textbf{12\%} {\scriptsize [5, 20]}" in tex and r"a|b\_c" in tex and r"caption \& 100\%" in tex
    assert "<strong>12%</strong>" in html and "[5, 20]" in html and "50%" in html
    assert tex_escape(EVIL) == r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}"


def test_a_column_where_every_method_ties_has_no_best():
    from reports.tables import mark_best
    cols = [Column("c", "Concept"), Column("rate", "Rate", "pct", "lower"), Column("sim", "Sim", "number", "higher")]
    rows = [{"c": Cell("x"), "rate": Cell(1.0), "sim": Cell(0.9)}, {"c": Cell("x"), "rate": Cell(1.0), "sim": Cell(0.8)},
            {"c": Cell("x"), "rate": Cell(1.0), "sim": Cell(0.9)}]
    table = Table("t", "T", "", cols, rows, group="c")
    mark_best(table)
    assert not any(r["rate"].best for r in rows)  # all 100%: nothing is best
    assert [r["sim"].best for r in rows] == [True, False, True]  # a partial tie still marks both


def _broken_copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken-run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report"))
    return copy


def _one_line_failure(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("eraselab: error: ")
    return err


def test_missing_image_is_a_one_line_error_and_writes_nothing(run_dir, tmp_path, capsys):
    broken = _broken_copy(run_dir, tmp_path)
    victim = pd.read_parquet(broken / "results.parquet").image_path.iloc[7]
    (broken / victim).unlink()
    out = tmp_path / "out" / "report"
    err = _one_line_failure(capsys, ["report", str(broken), "--out", str(out)])
    assert victim in err and "not found" in err
    assert not (tmp_path / "out").exists()  # not even the parent: the check comes first


def test_unreadable_image_fails_mid_build_and_leaves_nothing_behind(run_dir, tmp_path, capsys):
    broken = _broken_copy(run_dir, tmp_path)
    df = pd.read_parquet(broken / "results.parquet")
    first = df[(df.method == "original") & (df.concept == "snoopy") & (df.prompt_id == "target-0")
               & (df["sample"] == 0)].image_path.iloc[0]  # the grid's top-left image
    (broken / first).write_bytes(b"not a png")
    out = tmp_path / "out" / "report"
    err = _one_line_failure(capsys, ["report", str(broken), "--out", str(out)])
    assert first in err
    assert list((tmp_path / "out").iterdir()) == []  # the half-built temporary folder is gone


def test_missing_detection_on_a_target_prompt_is_an_error(run_dir, tmp_path, capsys):
    broken = _broken_copy(run_dir, tmp_path)
    df = pd.read_parquet(broken / "results.parquet")
    df.loc[df.index[df.prompt_set == "target"][3], "detected"] = None
    df.to_parquet(broken / "results.parquet")
    err = _one_line_failure(capsys, ["report", str(broken), "--out", str(tmp_path / "r")])
    assert "column 'detected' is empty for 1 rows" in err


@pytest.mark.parametrize("column", ["clip_score", "detected", "mapped_to", "clip_image_cosine"])
def test_missing_score_column_is_a_one_line_error(run_dir, tmp_path, capsys, column):
    broken = _broken_copy(run_dir, tmp_path)
    df = pd.read_parquet(broken / "results.parquet")
    df.drop(columns=[column]).to_parquet(broken / "results.parquet")
    err = _one_line_failure(capsys, ["report", str(broken), "--out", str(tmp_path / "r")])
    assert f"missing column '{column}'" in err and "results.parquet" in err
    assert not (tmp_path / "r").exists()


def test_bad_format_and_foreign_out_folder(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--format", "html,docx"]) == 2
    assert "docx" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(EraselabError, match="not an eraselab report"):
        build_report(run_dir, out=foreign, formats=("md",))
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_compare_flags_a_regression_with_separated_intervals(tmp_path):
    # fewer figures; enough images that a 60-point shift separates the 95% intervals
    small = {"concepts": ("snoopy",), "methods": ("original", "fewshot-te", "noop"), "samples": 12}
    baseline = make_run(tmp_path / "baseline", run_name="baseline", **small)
    worse = make_run(tmp_path / "worse", shift=0.6, seed=1, run_name="worse", **small)
    path = build_report(worse, out=tmp_path / "cmp", formats=("html", "md"), compare=baseline)
    md = (tmp_path / "cmp" / "tables" / "compare.md").read_text()
    regressions = [l for l in md.splitlines() if l.startswith("|") and "REGRESSION" in l]
    assert any("fewshot-te" in l and "Detection, target" in l for l in regressions)
    assert not any(l for l in regressions if "| original |" in l)  # the original did not change much
    html = path.read_text()
    assert 'class="regressions"' in html and "row-regression" in html
    assert (tmp_path / "cmp" / "report.md").read_text().count("**REGRESSION:**") == len(regressions)


def test_html_report_in_headless_chromium_escapes_user_strings(chromium, cli_report):
    index = cli_report[2] / "index.html"
    folder = index.parent
    page = open_page(chromium, index, screenshot=folder.parent / "screenshot.png")
    assert page.errors == [] and page.failed_requests == []
    # Every image loaded, and every relative link and image points at a file in the folder.
    assert len(page.images) == len(FIGURES) and all(img["loaded"] for img in page.images)
    targets = re.findall(r'(?:src|href)="([^"#][^"]*)"', page.dom)
    assert targets and all((folder / t).is_file() for t in targets), targets
    assert all(url.startswith("file://") for url in page.requests)  # nothing fetched from a network
    # The concept renders as text; no <script> element exists anywhere in the page.
    assert EVIL in page.text and f"run {EVIL}" in page.text and "<script" not in page.dom.lower()
    with Image.open(page.screenshot) as shot:
        pixels = np.asarray(shot.convert("L"), dtype=float)
    assert shot.size == (1200, 2000) and pixels.std() > 10, "blank screenshot"


def test_a_manifest_of_another_format_is_a_one_line_error(run_dir, tmp_path):
    copy = _broken_copy(run_dir, tmp_path)
    m = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**m, "format": "eraselab-run/1"}))
    with pytest.raises(EraselabError, match="eraselab-run/2") as err:
        load_run(copy)
    assert "\n" not in str(err.value) and "again" in str(err.value)
    (copy / "manifest.json").write_text(json.dumps({**m, "colour": "red"}))
    with pytest.raises(EraselabError, match="unknown manifest key 'colour'"):
        load_run(copy)


def test_manifest_round_trips_through_its_dataclass(run_dir):
    from bench.manifest import RunManifest, read_manifest
    manifest = read_manifest(run_dir / "manifest.json")
    assert RunManifest.from_dict(json.loads(manifest.to_json())) == manifest
    assert manifest.edits["fewshot-te-snoopy"].seconds == 2.1


def test_summary_cannot_judge_a_concept_the_original_never_shows(tmp_path, monkeypatch):
    import reports.synthetic as synthetic
    from bench.cli import main
    behaviour = {name: dict(b, target=0.0) for name, b in synthetic.BEHAVIOUR.items()}
    monkeypatch.setattr(synthetic, "BEHAVIOUR", behaviour)
    run = synthetic.make_run(tmp_path / "run", concepts=("snoopy",))
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--format", "html"]) == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "cannot be judged" in html and "did NOT erase" not in html


def test_every_method_of_a_large_comparison_has_its_own_colour_and_marker():
    from reports.figures import style
    looks = [(style(i)["color"], style(i)["marker"]) for i in range(64)]  # 13 methods are registered
    assert len(set(looks)) == 64


def test_a_variant_named_none_keeps_its_label():
    from reports.metrics import method_label
    # safree's "none" variant (no negative prompt) must not read as its default variant
    assert method_label("m", "safree", "none", False) == "safree (none)"
    assert method_label("m", "safree", "", False) == "safree"
    assert method_label("m", "safree", "None", True) == "m: safree"


def test_many_methods_map_as_a_heat_map_with_one_row_per_method():
    from reports.figures import MAX_MAPPING_BARS, mapping_figure
    analyses = [{"concept": c, "parent": "dog", "label": f"m{i}", "method_key": ("m", f"m{i}", ""),
                 "basis": "mean probability", "dist_before": {c: 0.9, "dog": 0.1},
                 "dist_after": {c: 0.1 * (i % 10), "dog": 0.5}}
                for c in ("snoopy", "church") for i in range(MAX_MAPPING_BARS)]
    fig = mapping_figure(analyses, summary=None)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 2  # one per concept, plus the colour bar
    rows = [t.get_text() for t in panels[0].get_yticklabels()]
    assert rows == ["original (before)"] + [f"m{i}" for i in range(MAX_MAPPING_BARS)]
    assert any("(parent)" in t.get_text() for t in panels[0].get_xticklabels())
