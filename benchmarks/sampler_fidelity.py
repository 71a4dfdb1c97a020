"""Does a faster sampler keep the mini SD's fidelity? The model card's bars under another sampler.

    python -m benchmarks.sampler_fidelity --scheduler dpm --steps 10        # ~10 min on 2 cores
    python -m benchmarks.sampler_fidelity --scheduler unipc --steps 8 --n-per-concept 64

Generates the model card's images (same prompts, same seeds, 64 per concept over the card's two
seeds) with the given sampler, judges them with the card's judges, and sets each concept's rate
beside the card's own (datasets/miniworld/v1/eval.json, measured with the card's 25-step DDIM
sampler). The rule for adopting a sampler in a suite: every concept's rate lies inside the card's
95% interval for that concept. The record lands in benchmarks/results/sampler_fidelity_<label>.json.
"""

from __future__ import annotations

import argparse
import json
import time

from bench.paths import MINIWORLD_DIR
from benchmarks.results_io import RESULTS_DIR, machine, write_result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scheduler", required=True, help="a suite scheduler name (dpm, unipc, ddim, ...)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--n-per-concept", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from bench.miniworld.evaluate import CARD_SAMPLER, eval_pipeline

    card = json.loads((MINIWORLD_DIR / "eval.json").read_text())["sections"]["pipeline"]["per_concept"]
    sampler = {"scheduler": args.scheduler, "steps": args.steps, "guidance": args.guidance}
    t0 = time.perf_counter()
    got = eval_pipeline(MINIWORLD_DIR, args.n_per_concept, None, sampler)
    seconds = time.perf_counter() - t0
    rows, outside = {}, []
    for concept, new in got["per_concept"].items():
        old = card[concept]
        inside = old["lo"] <= new["mean"] <= old["hi"]
        rows[concept] = {"card": old, "candidate": new, "inside_card_interval": inside}
        if not inside:
            outside.append(concept)
    report = {"benchmark": "sampler_fidelity", "machine": machine(), "threads": args.threads,
              "card_sampler": CARD_SAMPLER, "candidate_sampler": sampler,
              "n_per_concept": args.n_per_concept, "seconds": round(seconds, 1),
              "images_per_second": round(len(rows) * args.n_per_concept / seconds, 3),
              "mean_detection": {"card": card and round(sum(v["mean"] for v in card.values()) / len(card), 4),
                                 "candidate": got["mean_detection"]},
              "outside_card_interval": outside, "adoptable": not outside, "per_concept": rows}
    label = f"{args.scheduler}{args.steps}"
    out = write_result(report, RESULTS_DIR / f"sampler_fidelity_{label}.json")
    print(f"{label}: {seconds:.0f} s, mean {got['mean_detection']:.3f}; outside the card's intervals: "
          f"{outside or 'none'} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
