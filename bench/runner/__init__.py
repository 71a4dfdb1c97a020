"""The benchmark runner behind ``eraselab run SUITE``: erase -> generate -> score -> aggregate.

Modules, one job each: schema (table columns), suite (YAML schema), plan (the content-addressed
work items), store (the run folder, atomic writes), smoke (tiny stand-ins for ``--smoke``),
scoring (scorer construction), run (execution). Aggregation and the comparison of two runs are
``bench.metrics``'s. Nothing here imports torch at module level.
"""
