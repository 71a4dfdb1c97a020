"""Does a faster sampler keep the mini SD's fidelity? The model card's bars under another sampler.

    python -m benchmarks.sampler_fidelity --scheduler dpm --steps 10        # ~10 min on 2 cores
    python -m benchmarks.sampler_fidelity --scheduler unipc --steps 8 --n-per-concept 64
    python -m benchmarks.sampler_fidelity --scheduler dpm --steps 12 --precision bf16

Generates the model card's images (same prompts, same seeds, 64 per concept over the card's two
seeds) with the given sampler, judges them with the card's judges, and sets each concept's rate
beside the card's own (datasets/miniworld/v1/eval.json, measured with the card's 25-step DDIM
sampler). The rule for adopting a sampler in a suite (``adoption``): no concept's rate differs
from the card's by Fisher's exact test of the two counts with Benjamini-Hochberg over the
concepts, and every concept whose card interval (the card's percentile bootstrap 95% interval) is
not a single point holds the candidate's rate inside it. A card rate of 64/64 has the interval
[1, 1], which one miss in 64 leaves, even for the card's own sampler on other seeds, so those
concepts are judged by the test alone. The record also keeps the Clopper-Pearson 95% interval of
the card's count and whether the candidate lies in it. Each candidate's record lands under its label
(``dpm15``: scheduler and steps; ``dpm12-bf16`` with the precision when not fp32) in benchmarks/results/sampler_fidelity.json.
"""

from __future__ import annotations

import argparse
import json
import time

from bench.core.paths import MINIWORLD_DIR
from benchmarks.results_io import RESULTS_DIR, machine, write_result


def adoption(rows: dict) -> tuple[bool, list[str]]:
    """(adoptable, why not): the module docstring's rule over one candidate's per-concept rows."""
    failures = []
    for concept, row in rows.items():
        card, new = row["card"], row["candidate"]
        if row["fisher_p_adj"] < 0.05:
            failures.append(f"{concept}: differs from the card (Fisher, BH p = {row['fisher_p_adj']})")
        elif card["lo"] < card["hi"] and not card["lo"] <= new["mean"] <= card["hi"]:
            failures.append(f"{concept}: {new['mean']} outside the card's [{card['lo']}, {card['hi']}]")
    return not failures, failures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scheduler", required=True, help="a suite scheduler name (dpm, unipc, ddim, ...)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="the UNet's arithmetic (bench.samplers.unet_precision)")
    p.add_argument("--n-per-concept", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from bench.miniworld.evaluate import CARD_SAMPLER, eval_pipeline

    card = json.loads((MINIWORLD_DIR / "eval.json").read_text())["sections"]["pipeline"]["per_concept"]
    sampler = {"scheduler": args.scheduler, "steps": args.steps, "guidance": args.guidance,
               "precision": args.precision}
    t0 = time.perf_counter()
    got = eval_pipeline(MINIWORLD_DIR, args.n_per_concept, None, sampler)
    seconds = time.perf_counter() - t0
    from scipy.stats import binomtest, fisher_exact

    from bench.core.stats import benjamini_hochberg

    rows, outside, outside_exact, p_values = {}, [], [], []
    for concept, new in got["per_concept"].items():
        old = card[concept]
        inside = old["lo"] <= new["mean"] <= old["hi"]
        k_old, k_new = round(old["mean"] * old["n"]), round(new["mean"] * new["n"])
        exact = binomtest(k_old, old["n"]).proportion_ci(0.95, method="exact")
        inside_exact = exact.low <= new["mean"] <= exact.high
        p = float(fisher_exact([[k_old, old["n"] - k_old], [k_new, new["n"] - k_new]]).pvalue)
        p_values.append(p)
        rows[concept] = {"card": old, "candidate": new, "inside_card_interval": inside,
                         "card_clopper_pearson": [round(exact.low, 4), round(exact.high, 4)],
                         "inside_clopper_pearson": inside_exact, "fisher_p": round(p, 5)}
        outside += [] if inside else [concept]
        outside_exact += [] if inside_exact else [concept]
    for (concept, row), p_adj in zip(rows.items(), benjamini_hochberg(p_values)):
        row["fisher_p_adj"] = round(p_adj, 5)
    differ = [c for c, r in rows.items() if r["fisher_p_adj"] < 0.05]
    report = {"benchmark": "sampler_fidelity", "machine": machine(), "threads": args.threads,
              "card_sampler": CARD_SAMPLER, "candidate_sampler": sampler,
              "n_per_concept": args.n_per_concept, "seconds": round(seconds, 1),
              "images_per_second": round(len(rows) * args.n_per_concept / seconds, 3),
              "mean_detection": {"card": card and round(sum(v["mean"] for v in card.values()) / len(card), 4),
                                 "candidate": got["mean_detection"]},
              "outside_card_interval": outside,
              "outside_clopper_pearson": outside_exact, "fisher_bh_differ": differ, "per_concept": rows}
    report["adoptable"], report["adoption_failures"] = adoption(rows)
    label = f"{args.scheduler}{args.steps}" + ("" if args.precision == "fp32" else f"-{args.precision}")
    path = RESULTS_DIR / "sampler_fidelity.json"
    record = json.loads(path.read_text()) if path.is_file() else {"benchmark": "sampler_fidelity",
                                                                   "candidates": {}}
    record["candidates"][label] = report
    for candidate in record["candidates"].values():  # one rule for every candidate on record
        candidate["adoptable"], candidate["adoption_failures"] = adoption(candidate["per_concept"])
    out = write_result(record, path)
    print(f"{label}: {seconds:.0f} s, mean {got['mean_detection']:.3f}; adoptable: {report['adoptable']} "
          f"{report['adoption_failures']}; outside the card's intervals: "
          f"{outside or 'none'}; outside Clopper-Pearson: {outside_exact or 'none'}; differ (Fisher, BH): "
          f"{differ or 'none'} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
