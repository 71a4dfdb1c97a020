"""Check that the safetensors mini detector detects exactly what its ultralytics checkpoint does.

    python benchmarks/detector_format_check.py --checkpoint path/to/best.pt
        [--detector datasets/miniworld/v1/detector/model.safetensors] [--n 256] [--map]

Renders ``--n`` detector scenes (bench.miniworld.render.render_scene, seeded), runs both models
with the scorer's settings (threshold 0.25, the trained input size) and compares every box,
class and confidence. With ``--map`` both are also validated on 400 fresh validation scenes
(the writer train_detector uses, another seed) for mAP50. Writes
benchmarks/results/detector_format_check.json. The checkpoint is read in ultralytics' restricted
mode (bench.offline), as every YOLO load in eraselab.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import RESULTS_DIR, machine, model_label, write_result  # noqa: E402

SEED = 11  # the check's scenes: not a training or validation seed


def detections(model, images, imgsz):
    import torch
    from bench.offline import keep_torch_threads
    with keep_torch_threads(), torch.inference_mode():
        results = model.predict(images, conf=0.25, verbose=False, device="cpu", imgsz=imgsz)
    return [(r.boxes.cls.tolist(), r.boxes.conf.tolist(), r.boxes.xyxy.tolist()) for r in results]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--detector", type=Path,
                        default=ROOT / "datasets/miniworld/v1/detector/model.safetensors")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--map", action="store_true", help="also compare mAP50 on 400 val scenes")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(2)
    from PIL import Image

    from bench.miniworld import render as mw
    from bench.miniworld import train_detector
    from bench.miniworld.weights import sha256_of
    from bench.offline import setup_ultralytics_offline
    from detectors.yolo import load_yolo
    setup_ultralytics_offline()
    from ultralytics import YOLO

    pickle_model = YOLO(str(args.checkpoint), task="detect")
    rebuilt = load_yolo(str(args.detector))
    imgsz = train_detector.IMGSZ
    images = [Image.fromarray(mw.render_scene(mw.stable_seed("format-check", SEED, i)).image)
              for i in range(args.n)]
    t0 = time.time()
    want = detections(pickle_model, images, imgsz)
    got = detections(rebuilt, images, imgsz)
    identical = sum(w == g for w, g in zip(want, got))
    max_conf_diff = max((abs(a - b) for w, g in zip(want, got) if len(w[1]) == len(g[1])
                         for a, b in zip(w[1], g[1])), default=0.0)
    report = {"benchmark": "detector_format_check", "machine": machine(),
              "checkpoint": args.checkpoint.name,  # a local file; its sha256 identifies it
              "checkpoint_sha256": sha256_of(args.checkpoint), "detector": model_label(args.detector),
              "detector_sha256": sha256_of(args.detector),
              "images": args.n, "imgsz": imgsz, "threshold": 0.25,
              "boxes": sum(len(w[0]) for w in want),
              "identical_images": identical, "max_confidence_difference": max_conf_diff,
              "seconds": round(time.time() - t0, 1)}
    if args.map:
        from bench.offline import keep_torch_threads
        with tempfile.TemporaryDirectory() as tmp:
            data = train_detector.write_yolo_dataset(Path(tmp) / "data", progress=False,
                                                     seed=1000 + train_detector.SEED)
            for label, model in (("checkpoint", pickle_model), ("safetensors", rebuilt)):
                with keep_torch_threads():
                    val = model.val(data=str(data), split="val", imgsz=imgsz, device="cpu", plots=False,
                                    workers=0, verbose=False, project=str(Path(tmp) / "val"),
                                    name=label, exist_ok=True)
                report[f"mAP50_{label}"] = round(float(val.box.map50), 4)
    out = write_result(report, RESULTS_DIR / "detector_format_check.json")
    print(out)
    print(report)
    return 0 if identical == args.n else 1


if __name__ == "__main__":
    raise SystemExit(main())
