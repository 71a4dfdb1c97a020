"""The HTML report page: one self-contained ``index.html`` beside its ``figures/`` folder.

    from reports.html import page
    text = page(ctx)       # ctx: the dict reports.build assembles (see build_report)

No scripts, no external fonts or stylesheets (the CSS is inline), images by relative path, so
the folder opens from disk, offline, anywhere. Every string that comes from a catalog, suite,
prompt or manifest passes through ``html.escape``; a Content-Security-Policy forbids scripts as
a second line of defence.
"""

from __future__ import annotations

import html
import json

from reports.render import to_html

CSS = """
:root { --ink:#1b1b1b; --muted:#5b5b5b; --rule:#d0d0d0; --bad:#a40000; --good:#0b6b2e; --hi:#fff4c2; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1180px; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 16px; margin: 22px 0 6px; }
.meta { color: var(--muted); font-size: 13px; margin: 0 0 12px; }
nav { font-size: 14px; margin: 8px 0 0; }
nav a { margin-right: 14px; }
a { color: #0b4f8a; }
ul.headline { padding-left: 20px; margin: 8px 0; }
ul.headline li { margin: 4px 0; }
li.ok::marker { content: "\\2713  "; color: var(--good); }
li.failed { color: var(--bad); font-weight: 600; }
li.failed::marker { content: "\\2717  "; }
.warning { border-left: 5px solid #b26b00; background: #fff6e5; padding: 8px 12px; margin: 12px 0; }
.regressions { border-left: 5px solid var(--bad); background: #fdecec; padding: 8px 12px; margin: 12px 0; }
.scroll { overflow-x: auto; margin: 8px 0 4px; }
table.report-table { border-collapse: collapse; font-size: 13px; min-width: 100%;
                     font-variant-numeric: tabular-nums; }
table.report-table caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: 12.5px;
                             padding-top: 6px; }
table.report-table th { text-align: left; vertical-align: bottom; border-bottom: 1.5px solid var(--ink);
                        padding: 4px 8px; font-weight: 600; }
table.report-table th.num, table.report-table td.num { text-align: right; }
table.report-table td { padding: 3px 7px; vertical-align: top; border-bottom: 1px solid #eee; white-space: nowrap; }
table.report-table tr.group-start td { border-top: 1px solid var(--rule); }
table.report-table td.best { background: #eef6ee; }
table.report-table .ci { display: block; color: var(--muted); font-size: 11px; line-height: 1.2; }
table.report-table th { font-size: 12px; line-height: 1.25; min-width: 64px; }
table.report-table tr.row-regression td { background: #fde2e2; }
table.report-table td.flag-regression { color: var(--bad); font-weight: 700; }
table.report-table td.flag-improvement { color: var(--good); font-weight: 600; }
p.note { color: var(--muted); font-size: 12.5px; font-style: italic; margin: 2px 0; }
figure { margin: 16px 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; image-rendering: auto; }
figure.grid img { image-rendering: pixelated; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 13px; }
dl.prov dt { font-weight: 600; } dl.prov dd { margin: 0; word-break: break-word; }
code, pre { font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
"""


def _figure(fig: dict, css_class: str = "") -> str:
    e = html.escape
    cls = f' class="{css_class}"' if css_class else ""
    return (f"<figure{cls}><img src=\"{e(fig['png'])}\" alt=\"{e(fig['title'])}\">"
            f"<figcaption><strong>{e(fig['title'])}.</strong> {e(fig['caption'])} "
            f"(<a href=\"{e(fig['pdf'])}\">PDF</a>)</figcaption></figure>")


def page(ctx: dict) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           # No script may run in a report, whatever a catalog string contains.
           "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'none'; object-src 'none'\">",
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(ctx['title'])}</title>", f"<style>{CSS}</style></head><body>",
           f"<h1>{e(ctx['title'])}</h1>", f'<p class="meta">{e(ctx["subtitle"])}</p>']
    sections = [("summary", "Summary"), ("tables", "Tables"), ("figures", "Figures"), ("grids", "Image grids")]
    if ctx.get("studies"):
        sections.append(("studies", "Studies"))
    if ctx.get("compare"):
        sections.append(("compare", "Comparison"))
    sections.append(("provenance", "Provenance"))
    out.append("<nav>" + "".join(f'<a href="#{k}">{e(v)}</a>' for k, v in sections) + "</nav>")

    out.append('<h2 id="summary">Summary</h2>')
    for reason in ctx["smoke"]:
        out.append(f'<p class="warning"><strong>Smoke test, not a reportable result:</strong> {e(reason)}.</p>')
    for problem in ctx["problems"]:
        out.append(f'<p class="warning">{e(problem)}</p>')
    out.append('<ul class="headline">')
    for line in ctx["headline"]:
        out.append(f'<li class="{"ok" if line.ok else "failed"}">{e(line.text)}</li>')
    out.append("</ul>")
    out.append(f'<p class="note">{e(ctx["method_note"])}</p>')
    if ctx.get("compare") and ctx["compare"]["regressions"]:
        out.append(f'<p class="regressions"><strong>{len(ctx["compare"]["regressions"])} regression(s) '
                   f'against {e(ctx["compare"]["baseline"])}</strong> (see <a href="#compare">Comparison</a>).</p>')

    out.append('<h2 id="tables">Tables</h2>')
    for table, files in ctx["tables"]:
        links = " \u00b7 ".join(f'<a href="{e(path)}">{e(fmt)}</a>' for fmt, path in files.items())
        out.append(f"<h3>{e(table.title)}</h3>" + (f'<p class="meta">Also as {links}.</p>' if links else ""))
        out.append(f'<div class="scroll">{to_html(table)}</div>')

    out.append('<h2 id="figures">Figures</h2>')
    out += [_figure(f) for f in ctx["figures"]] or ['<p class="note">No figures: nothing to plot.</p>']
    out.append('<h2 id="grids">Image grids</h2>')
    out += [_figure(f, "grid") for f in ctx["grids"]] or ['<p class="note">No images to show.</p>']

    if ctx.get("studies"):
        out.append('<h2 id="studies">Studies</h2>')
        for st in ctx["studies"]:
            links = " \u00b7 ".join(f'<a href="{e(path)}">{e(fmt)}</a>' for fmt, path in st["files"].items())
            out.append(f"<h3>{e(st['title'])}</h3>")
            out.append(f'<p class="answer"><strong>Answer:</strong> {e(st["answer"])}</p>')
            out.append((f'<p class="meta">Table also as {links}.</p>' if links else "")
                       + f'<div class="scroll">{to_html(st["table"])}</div>')
            out += [_figure(f) for f in st["figures"]]

    if ctx.get("compare"):
        cmp = ctx["compare"]
        out.append('<h2 id="compare">Comparison</h2>')
        out.append(f'<p class="meta">This run ({e(ctx["run_name"])}) against the baseline '
                   f'{e(cmp["baseline"])} ({e(str(cmp["baseline_path"]))}).</p>')
        if cmp["regressions"]:
            out.append('<div class="regressions"><strong>Regressions</strong> (Benjamini-Hochberg adjusted p &lt; 0.05):<ul>'
                       + "".join(f"<li>{e(r)}</li>" for r in cmp["regressions"]) + "</ul></div>")
        else:
            out.append("<p>No regressions (no test significant after Benjamini-Hochberg at q = 0.05).</p>")
        out.append(f'<div class="scroll">{to_html(cmp["table"])}</div>')

    out.append('<h2 id="provenance">Provenance</h2><dl class="prov">')
    for key, value in ctx["provenance"]:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        out.append(f"<dt>{e(key)}</dt><dd><code>{e(text)}</code></dd>")
    out.append("</dl></body></html>")
    return "\n".join(out) + "\n"
