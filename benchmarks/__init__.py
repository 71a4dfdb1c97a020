"""Measurements of eraselab itself: speed, determinism, model-development splits (not tests).

Each module is a script run from the repository root as ``python -m benchmarks.<name>``
(``python -m benchmarks.erase_speed --help``); it records its numbers under
``benchmarks/results/`` (one current record per benchmark) and asserts nothing.
"""
