"""``eraselab report RUN [--compare RUN_B] [--format html,md,tex] [--out DIR]``: a run's report.

    eraselab report runs/mini                       # -> runs/mini/report/index.html
    eraselab report runs/mini --compare runs/prev --format html,md --out /tmp/mini-report

Tables (Markdown, LaTeX/booktabs, HTML), figures (PNG and PDF) and a self-contained HTML page;
with --compare, the differences from a baseline run with regressions flagged. The last line
printed is the path of the report's main file. A missing image or score column is a one-line
error and leaves no partial report behind (see reports/build.py).
"""

from __future__ import annotations

from bench.core.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="tables, figures and an HTML report of a run",
                       description="Write a run's report: tables (Markdown, LaTeX, HTML), figures (PNG, PDF) "
                                   "and a self-contained HTML page; prints the report's path.")
    p.add_argument("run", metavar="RUN", help="run directory (results.parquet, manifest.json)")
    p.add_argument("--compare", metavar="RUN_B", default=None,
                   help="baseline run directory: add its differences, regressions highlighted")
    p.add_argument("--format", default="html,md,tex", metavar="F,G",
                   help="comma-separated formats out of html, md, tex (default: html,md,tex)")
    p.add_argument("--out", metavar="DIR", default=None, help="report folder (default: RUN/report)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from reports.build import FORMATS, build_report

    formats = [f.strip().lower() for f in str(args.format).split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format: unknown format {(bad or [''])[0]!r}; choose from {','.join(FORMATS)}")
    path = build_report(args.run, out=args.out, formats=formats, compare=args.compare)
    print(path)
    return 0
