"""The benchmark runner behind ``eraselab run SUITE``: erase -> generate -> score -> aggregate.

Modules, one job each: schema (table columns), suite (YAML schema), plan (the content-addressed
work items), store (the run folder, atomic writes), smoke (tiny stand-ins for ``--smoke``),
scoring (scorer construction), run (execution), aggregate (bootstrap aggregates), compare
(regression check between two runs). Nothing here imports torch at module level.
"""
