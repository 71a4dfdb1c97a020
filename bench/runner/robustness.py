"""The ``robustness:`` section of a suite: do attacks and probes bring an erased concept back?

    robustness:
      arms: [fewshot-te, esd-x, uce, negative-prompt, sld]   # arms of `methods`
      probes: [surface, unseen-templates, unlearndiff, soft-prompt]   # attacks/__init__.py TABLE
      prompts: 2        # prompts per prompt probe
      base_prompts: 1   # target prompts (the first ones) each optimised attack attacks
      samples: 8        # images per prompt probe prompt (an attack draws as many as its base prompt has)
      budgets: {unlearndiff: {iterations: 20}}   # overrides of attacks/defaults.py, per probe

Every probe runs on every listed arm and, as the control, on the original model, with the same
prompts and seeds. An optimised attack attacks each base prompt once per (edit, erasure seed) and
its images are drawn with the seeds of that prompt's plain target images, so attacked and plain
images pair one to one. A probe that cannot reach an arm (a white-box attack against an
inference-time method) or cannot probe a concept (no description in the catalog) is planned as
not applicable, with its reason, never as 0%. Validation is part of the suite's
(bench/runner/suite.py): every problem is one line naming the key. Planning is
bench/runner/robustness_plan.py; the attacks are attacks/.
"""

from __future__ import annotations

import dataclasses

from bench.core.errors import EraselabError, quoted
from bench.core.yamlio import key_problems, unknown_key_hint

KEYS = {"arms", "probes", "prompts", "base_prompts", "samples", "budgets"}


@dataclasses.dataclass(frozen=True)
class Robustness:
    arms: tuple          # MethodSpec of each attacked arm
    probes: tuple        # probe names, in the suite's order
    prompts: int
    base_prompts: int
    samples: int
    budgets: dict        # probe -> {config key: value}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse(raw, methods, catalog, concepts, where: str, bad) -> Robustness | None:
    """The section as a Robustness, or None after reporting each problem through ``bad``."""
    from attacks import ATTACKS
    from bench.runner.resurgence import study_arms

    if not isinstance(raw, dict) or not raw:
        bad(where, "expected a mapping {arms, probes, prompts, samples, budgets}")
        return None
    ok = [True]

    def fail(key, msg):
        ok[0] = False
        bad(f"{where}.{key}" if key else where, msg)

    for key, msg in key_problems(raw, KEYS, ("arms", "probes")):
        fail(key, msg)
    arms = study_arms(raw.get("arms"), methods, fail)
    probes = raw.get("probes")
    if not isinstance(probes, list) or not probes or not all(isinstance(p, str) for p in probes):
        fail("probes", f"expected a non-empty list of probe names, got {quoted(probes)}")
        probes = []
    for i, p in enumerate(probes):
        if p not in ATTACKS:
            fail(f"probes[{i}]", f"unknown probe {quoted(p)}; {unknown_key_hint(p, ATTACKS.names())}")
    if len(set(probes)) != len(probes):
        fail("probes", "a probe is listed twice")
    sizes = {}
    for key, default in (("prompts", 2), ("base_prompts", 1), ("samples", 8)):
        v = raw.get(key, default)
        if not _is_int(v) or v < 1:
            fail(key, f"expected a positive integer, got {quoted(v)}")
            v = default
        sizes[key] = v
    budgets = raw.get("budgets", {}) or {}
    if not isinstance(budgets, dict):
        fail("budgets", "expected a mapping probe -> {config key: value}")
        budgets = {}
    for probe, values in budgets.items():
        if probe not in probes:
            fail(f"budgets.{probe}", f"not a probe of this section; {unknown_key_hint(str(probe), probes)}")
        elif not isinstance(values, dict):
            fail(f"budgets.{probe}", "expected a mapping {config key: value}")
        else:
            problem = budget_problem(probe, values)
            if problem:
                fail(f"budgets.{probe}", problem)
    if not ok[0]:
        return None
    return Robustness(arms=tuple(arms), probes=tuple(probes), prompts=sizes["prompts"],
                      base_prompts=sizes["base_prompts"], samples=sizes["samples"], budgets={p: dict(v) for p, v in budgets.items()})


def budget_problem(probe: str, values: dict) -> str | None:
    """Why ``values`` are not a valid budget of ``probe`` in every model family, or None."""
    from attacks.base import get_probe, resolve_probe_config
    from methods.defaults import FAMILIES
    cls = get_probe(probe)
    if cls.kind == "prompt":
        return f"{probe} is a prompt probe: it has no budget"
    for family in FAMILIES:
        try:
            resolve_probe_config(cls, family, values)
        except EraselabError as exc:
            return str(exc)
    return None
