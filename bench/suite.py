"""Suites (datasets/suites/*.yaml): a thin front for bench/runner/suite.py.

    from bench.suite import load_suite, validate_suite_file
    suite = load_suite("mini-default")                  # a name or a path; raises ValidationError
    problems = validate_suite_file("my-suite.yaml")     # one line per problem, [] when valid
"""

from bench.runner.suite import Suite, load_suite, validate_suite_file

__all__ = ["Suite", "load_suite", "validate_suite_file"]
