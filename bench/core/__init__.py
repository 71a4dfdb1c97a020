"""The bottom layer of eraselab: small tools every other layer uses, with no torch and no models.

errors (one-line user errors, "did you mean"), registry (lazy name -> class tables), yamlio (YAML
with ``include:``), stats (intervals and tests), ids (content addresses and image seeds), paths
(where the repository's data lives), schema (the column names of a run's tables). Nothing here
imports from any other eraselab package; tests/test_layers.py checks it.
"""
