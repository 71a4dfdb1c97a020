"""Comparison reports: tables, paper figures and the HTML report of a run."""
