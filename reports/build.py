"""Build a run's report folder: ``build_report("runs/mini")`` -> runs/mini/report/index.html.

    eraselab report runs/mini --compare runs/baseline --format html,md,tex --out /tmp/report

Layout of the folder (all links relative, so it can be moved or zipped as one piece):
    index.html            the HTML report (summary, tables, figures, grids, comparison)
    report.md, report.tex the same tables and figures as Markdown / a LaTeX document
    tables/<name>.md|.tex one file per table (booktabs LaTeX; \\input{} it in a paper)
    figures/<name>.png|.pdf
The folder is built in a temporary sibling and renamed into place only when complete, so a
failure (a missing image, a missing score column) leaves no half-written report behind.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from bench.core.errors import EraselabError, UsageError
from bench.core.files import replace_folder

FORMATS = ("html", "md", "tex")
MARKER = ".eraselab-report"  # marks a folder this module may replace on a rerun


def method_note(aggregates) -> str:
    """How the report's verdicts are decided, with the size of this run's family of tests."""
    from bench.metrics import METRIC_BY_NAME
    main = aggregates["metric"].map(lambda m: METRIC_BY_NAME[m].family == "main")
    family = int((aggregates["p"].notna() & main).sum())
    return (
        "How verdicts are decided: every edited image has a same-seed twin from the original model, so "
        "effects are paired differences (edited minus twin). A method erased a concept when exact "
        "McNemar's test of its target detections against the twins' is significant after Benjamini-"
        f"Hochberg false-discovery control at q = 0.05 over the run's {family} tests, and the 95% "
        "hierarchical bootstrap interval of the change (erasure seeds resampled first, then images) lies "
        "below zero. Significant but with an interval that reaches zero: the edits made differ, but not "
        "reliably across erasure seeds. CLIP scores use the Wilcoxon signed-rank test, KID a z-test "
        "against zero. See docs/protocol.md.")


def build_report(run_path, out=None, formats=FORMATS, compare=None) -> Path:
    """Write the report of ``run_path``; returns its main file (index.html, else report.md/.tex)."""
    from reports.rundata import load_run

    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"unknown report format {unknown[0] if unknown else ''!r}; choose from {','.join(FORMATS)}")
    run = load_run(run_path)
    comparison = None
    if compare:
        from bench.rundir import compare_runs
        comparison = compare_runs(compare, run_path)
    out = Path(out) if out else run.path / "report"
    if out.exists() and not (out / MARKER).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise EraselabError(f"{out}: exists and is not an eraselab report; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; a report is meant to be shared
    try:
        main_name = _write(run, comparison, Path(compare) if compare else None, tmp, formats)
        (tmp / MARKER).write_text(json.dumps({"run": str(run.path), "formats": list(formats)}) + "\n")
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / main_name


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:40] or "concept"


def _write(run, comparison, baseline_path, folder: Path, formats) -> str:
    from reports import figures as figs
    from reports.compare import compare_table
    from reports.grid import grid_figure
    from reports.mapping import analyse_run
    from reports.metrics import summarize
    from reports.summary import Line, headline
    from reports.tables import main_table, mapping_table, overview_table

    full_run, run = run, main_view(run)
    summary = summarize(run)
    analyses = analyse_run(run, summary)
    tables = [main_table(summary)]
    if len(summary.concepts) > 1:  # with one concept the main table is the overview
        tables.insert(0, overview_table(summary))
    if analyses:
        tables.append(mapping_table(analyses))
    cmp = None
    if comparison is not None:
        result, notes = comparison
        table, regressions = compare_table(result, several_models=len({k[0] for k in summary.methods}) > 1)
        table.notes[:0] = notes
        cmp = {"table": table, "regressions": regressions, "baseline": baseline_path.name,
               "baseline_path": baseline_path}
        tables_all = tables + [table]
    else:
        tables_all = tables

    table_files: dict[str, dict[str, str]] = {}
    (folder / "tables").mkdir()
    for table in tables_all:
        _write_table_files(table, folder, formats, table_files)

    fig_dir = folder / "figures"
    figures, grids = [], []
    # Grids first: they read the images, the likeliest thing to fail, before other work is spent.
    for i, concept in enumerate(summary.concepts):
        fig = grid_figure(run, summary, concept)
        if fig is None:
            continue
        name = f"grid-{i + 1:02d}-{slug(concept)}"  # numbered: two concepts may share a slug
        figs.save(fig, fig_dir, name)
        grids.append({"name": name, "title": f"Images for \u201c{concept}\u201d",
                      "caption": "Rows: the original model, then each method; columns: the same prompt "
                                 "and seed in every row.",
                      "png": f"figures/{name}.png", "pdf": f"figures/{name}.pdf"})

    specs = [("tradeoff", "Erasure vs preservation", figs.tradeoff_figure(summary),
              "One point per method, pooled over erased concepts: detection rate on target prompts (x, "
              "lower = erased) against detection on unrelated prompts (y, higher = preserved); bars are "
              "95% bootstrap intervals. The hollow marker is the original model."),
             ("mapping", "What the erased concept became", figs.mapping_figure(analyses, summary),
              "Per erased concept, the zero-shot CLIP label distribution of its target-prompt images "
              "before erasure (white bars) and after each method (hatched bars); the catalog's recorded "
              "parent is shaded and marked \u25b6."),
             ("cost", "Cost of erasure", figs.cost_figure(summary),
              "Wall-clock seconds of each edit, log scale: bar = mean over concepts, markers = single edits.")]
    for name, title, fig, caption in specs:
        if fig is not None:
            figs.save(fig, fig_dir, name)
            figures.append({"name": name, "title": title, "caption": caption,
                            "png": f"figures/{name}.png", "pdf": f"figures/{name}.pdf"})
    judges = _judges(run, fig_dir)
    studies = (judges + _studies(run, summary, fig_dir) + _resurgence(full_run, fig_dir)
               + _robustness(full_run, fig_dir))
    for study in studies:
        _write_table_files(study["table"], folder, formats, table_files)
    suite = run.suite
    n_methods = sum(1 for k in summary.methods if k[1] != "original")
    ctx = {
        "title": f"eraselab report: {run.name}", "run_name": run.name,
        "subtitle": (f"suite {run.suite_name} \u00b7 catalog {suite.get('catalog', '?')} \u00b7 "
                     f"{len(run.results)} images \u00b7 {n_methods} erasing method(s) \u00b7 "
                     f"{len(summary.concepts)} concept(s) \u00b7 from {run.path}"),
        "headline": headline(summary) + [Line(f"{st['title'].split(': ', 1)[-1].capitalize()}: "
                                              f"{st['answer']}", True, "", "") for st in judges],
        "smoke": (["the runner was invoked with --smoke"] if run.manifest.smoke else []) + summary.smoke,
        "problems": run.problems, "method_note": method_note(run.aggregates),
        "tables": [(t, table_files.get(t.name, {})) for t in tables], "figures": figures, "grids": grids,
        "compare": cmp, "provenance": _provenance(run),
        "studies": [{**st, "files": table_files.get(st["table"].name, {})} for st in studies],
    }
    main = None
    if "tex" in formats:
        (folder / "report.tex").write_text(_latex_document(ctx), encoding="utf-8")
        main = "report.tex"
    if "md" in formats:
        (folder / "report.md").write_text(_markdown_document(ctx), encoding="utf-8")
        main = "report.md"
    if "html" in formats:
        from reports.html import page
        (folder / "index.html").write_text(page(ctx), encoding="utf-8")
        main = "index.html"
    return main


def _write_table_files(table, folder: Path, formats, table_files: dict) -> None:
    from reports.render import to_latex, to_markdown
    table_files[table.name] = {}
    for fmt, render in (("md", to_markdown), ("tex", to_latex)):
        if fmt in formats:
            rel = f"tables/{table.name}.{fmt}"
            (folder / rel).write_text(render(table), encoding="utf-8")
            table_files[table.name]["Markdown" if fmt == "md" else "LaTeX"] = rel


def _studies(run, summary, fig_dir: Path) -> list[dict]:
    """Each study's section: its title, one-sentence answer, table and figures."""
    from reports import figures as figs
    from reports.studies import answer, find_studies, study_table
    from reports.study_figures import study_figures

    out = []
    for i, study in enumerate(find_studies(run, summary), start=1):
        prefix = f"study-{i:02d}"
        figures = []
        for name, title, fig, caption in study_figures(study, prefix):
            figs.save(fig, fig_dir, name)
            figures.append({"name": name, "title": title, "caption": caption,
                            "png": f"figures/{name}.png", "pdf": f"figures/{name}.pdf"})
        out.append({"title": f"{study.name} ({study.method}, {study.model})", "answer": answer(study),
                    "table": study_table(study, i), "figures": figures})
    return out


def main_view(run):
    """The run without its resurgence and robustness arms: they have sections of their own
    (reports/resurgence.py, reports/robustness.py) and would crowd the main table, the grids and
    the trade-off figure."""
    import dataclasses
    from bench.rundir import main_aggregates, resurgence_rows, robustness_rows
    studied = resurgence_rows(run.results).index.union(robustness_rows(run.results).index)
    if len(studied) == 0:
        return run
    return dataclasses.replace(run, results=run.results.drop(studied),
                               aggregates=main_aggregates(run.aggregates, run.results))


def _sections(sections, figures_of, prefix: str, fig_dir: Path) -> list[dict]:
    """Report sections (title, answer, table) with their figures saved: ``figures_of(section,
    name prefix)`` yields (name, title, figure, caption)."""
    from reports import figures as figs

    out = []
    for i, section in enumerate(sections, start=1):
        figures = []
        for name, title, fig, caption in figures_of(section, f"{prefix}-{i:02d}"):
            figs.save(fig, fig_dir, name)
            figures.append({"name": name, "title": title, "caption": caption,
                            "png": f"figures/{name}.png", "pdf": f"figures/{name}.pdf"})
        out.append({"title": section.title, "answer": section.answer, "table": section.table,
                    "figures": figures})
    return out


def _judges(run, fig_dir: Path) -> list[dict]:
    """The judge sections (agreement, threshold sensitivity)."""
    from reports.judge_figures import judge_figures
    from reports.judges import judge_sections
    return _sections(judge_sections(run), judge_figures, "judges", fig_dir)


def _resurgence(run, fig_dir: Path) -> list[dict]:
    """Each resurgence section."""
    from reports.resurgence import resurgence_studies
    from reports.resurgence_figures import resurgence_figures
    return _sections(resurgence_studies(run), resurgence_figures, "resurgence", fig_dir)


def _robustness(run, fig_dir: Path) -> list[dict]:
    """The robustness sections (prompt and text attacks, embedding attacks, costs)."""
    from reports.robustness import robustness_sections
    from reports.robustness_figures import robustness_figures
    return _sections(robustness_sections(run), robustness_figures, "robustness", fig_dir)


def _provenance(run) -> list[tuple[str, object]]:
    m = run.manifest
    items = [("run directory", str(run.path)), ("suite", run.suite),
             ("git commit", str(m.git_commit or "unknown")), ("hardware", m.hardware or "unknown"),
             ("versions", m.versions), ("stage seconds", run.stage_seconds())]
    return [(k, v) for k, v in items if v not in (None, {}, "")]


def _markdown_document(ctx: dict) -> str:
    from reports.render import _md_escape, to_markdown

    lines = [f"# {_md_escape(ctx['title'])}", "", _md_escape(ctx["subtitle"]), "", "## Summary", ""]
    lines += [f"> **Smoke test, not a reportable result:** {_md_escape(r)}." for r in ctx["smoke"]]
    lines += [f"- {'' if l.ok else '**FAILED:** '}{_md_escape(l.text)}" for l in ctx["headline"]]
    lines += ["", f"*{_md_escape(ctx['method_note'])}*"]
    lines += ["", "## Tables", ""] + [to_markdown(t) for t, _ in ctx["tables"]]
    lines += ["## Figures", ""]
    for f in ctx["figures"] + ctx["grids"]:
        lines += [f"![{_md_escape(f['title'])}]({f['png']})", "", f"*{_md_escape(f['caption'])}*", ""]
    if ctx["studies"]:
        lines += ["## Studies", ""]
    for st in ctx["studies"]:
        lines += [f"### {_md_escape(st['title'])}", "", f"**Answer:** {_md_escape(st['answer'])}", "",
                  to_markdown(st["table"])]
        for f in st["figures"]:
            lines += [f"![{_md_escape(f['title'])}]({f['png']})", "", f"*{_md_escape(f['caption'])}*", ""]
    if ctx["compare"]:
        lines += ["## Comparison", ""]
        lines += [f"- **REGRESSION:** {_md_escape(r)}" for r in ctx["compare"]["regressions"]] or \
            ["No regressions (no test significant after Benjamini-Hochberg at q = 0.05)."]
        lines += ["", to_markdown(ctx["compare"]["table"])]
    return "\n".join(lines).rstrip() + "\n"


def _latex_document(ctx: dict) -> str:
    from reports.render import tex_escape, to_latex

    lines = [r"\documentclass[10pt]{article}", r"\usepackage[utf8]{inputenc}", r"\usepackage[T1]{fontenc}",
             r"\usepackage[margin=2cm,landscape]{geometry}", r"\usepackage{booktabs,graphicx}",
             r"\begin{document}", rf"\section*{{{tex_escape(ctx['title'])}}}",
             tex_escape(ctx["subtitle"]), "", r"\subsection*{Summary}", r"\begin{itemize}"]
    failed = r"\textbf{FAILED:} "
    lines += [rf"\item {'' if l.ok else failed}{tex_escape(l.text)}" for l in ctx["headline"]]
    lines += [r"\end{itemize}"] + [rf"\textbf{{Smoke test:}} {tex_escape(r)}." for r in ctx["smoke"]]
    lines += ["", tex_escape(ctx["method_note"]), ""]
    lines += [to_latex(t) for t, _ in ctx["tables"]]
    if ctx["compare"]:
        lines.append(to_latex(ctx["compare"]["table"]))
    for st in ctx["studies"]:
        lines += [rf"\subsection*{{Study: {tex_escape(st['title'])}}}", tex_escape(st["answer"]), "",
                  to_latex(st["table"])]
    for f in ctx["figures"] + ctx["grids"] + [f for st in ctx["studies"] for f in st["figures"]]:
        lines += [r"\begin{figure}[p]\centering",
                  rf"\includegraphics[width=\linewidth,height=0.8\textheight,keepaspectratio]{{{f['pdf']}}}",
                  rf"\caption{{{tex_escape(f['title'])}. {tex_escape(f['caption'])}}}", r"\end{figure}"]
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"
