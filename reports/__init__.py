"""Comparison reports: tables, paper figures and the HTML report of a run.

    eraselab report RUN [--compare RUN_B] [--format html,md,tex] [--out DIR]
    python -m reports.synthetic /tmp/synth && eraselab report /tmp/synth   # try it without a model

Modules, in the order the report is built (reports/build.py drives them):
  rundata   load and check a run directory (missing images / score columns are errors)
  metrics   per (method, concept) estimates with bootstrap 95% intervals, from the rows
  mapping   what each erased concept became (detectors.mapping.mapping_analysis per method)
  summary   the opening sentences: who erased what, at what cost, and who failed
  tables    the table model (typed cells, best marked); render: Markdown, LaTeX, HTML from it
  compare   differences from a baseline run, regressions beyond both intervals
  figures   trade-off scatter, mapping bars, cost (matplotlib Agg, PNG + PDF); grid: image grids
  html      the self-contained index.html
  synthetic a fake run directory for tests and demos
"""
