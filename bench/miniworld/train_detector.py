"""Stage 4: train the mini detector, an ultralytics YOLO built from yolov8n.yaml (no pretraining).

    eraselab miniworld train detector [--resume] [--steps EPOCHS]

Data: rendered scenes (bench.miniworld.render.render_scene: 1-3 objects or instances, any
style) with their boxes, plus 5% "nothing" distractors with no boxes, so that noise and blobs
yield no detection. Classes: the 12 objects and 4 instances/logos. Images are written once to
checkpoints/detector_data/ in YOLO's folder layout; training is fully offline (bench.offline),
amp off, plots off, imgsz 128 (the 64x64 renders upscaled: YOLO's stride is 32). Writes
detector/model.safetensors + detector/model.yaml (the architecture, class names and input size:
loading needs no unpickling, see detectors/yolo.py) and detector/metrics.json (mAP50 on the val
scenes). ultralytics' own checkpoints (a pickle) stay under checkpoints/, for --resume only.

An existing ultralytics checkpoint converts to the shipped format with

    python -m bench.miniworld.train_detector convert path/to/best.pt datasets/miniworld/v1/detector

(read in ultralytics' restricted mode; checksums are not recorded by this command).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from bench.miniworld import render as mw
from bench.core.files import write_text

SEED = 3
EPOCHS = 30
N_TRAIN = 3000
N_VAL = 400
IMGSZ = 128
BATCH = 32
P_NOTHING = 0.05


def detector_classes() -> list[str]:
    return list(mw.OBJECTS) + list(mw.INSTANCES)


def write_yolo_dataset(folder: Path, progress: bool, seed: int = SEED) -> Path:
    """Render train/val scenes to YOLO's layout (images/, labels/, data.yaml); reused if complete."""
    folder = Path(folder)
    data_yaml = folder / "data.yaml"
    if data_yaml.is_file():
        return data_yaml
    classes = detector_classes()
    index = {name: i for i, name in enumerate(classes)}
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in tqdm(range(n), desc=f"detector data {split}", disable=not progress, mininterval=2):
            seed_i = mw.stable_seed("detector", split, seed, i)
            if (seed_i % 1000) / 1000 < P_NOTHING:
                sample = mw.render(mw.NOTHING, "plain", seed_i)
            else:
                sample = mw.render_scene(seed_i, max_objects=3)
            size = sample.image.shape[0]
            Image.fromarray(sample.image).save(folder / "images" / split / f"{i:05d}.png")
            lines = []
            for label, x0, y0, x1, y1 in sample.boxes:
                cx, cy = (x0 + x1) / 2 / size, (y0 + y1) / 2 / size
                w, h = (x1 - x0) / size, (y1 - y0) / size
                lines.append(f"{index[label]} {cx:.5f} {cy:.5f} {w:.5f} {h:.5f}")
            (folder / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines))
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(classes))
    write_text(data_yaml, f"path: {folder}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data_yaml


def train(out_dir: Path, ckpt_dir: Path, root: Path | None = None, steps: int = EPOCHS,
          resume: bool = False, progress: bool = True) -> dict:
    from bench.offline import setup_ultralytics_offline
    setup_ultralytics_offline()
    from ultralytics import YOLO

    data_yaml = write_yolo_dataset(Path(ckpt_dir) / "detector_data", progress)
    project = (Path(ckpt_dir) / "detector_runs").resolve()
    last = project / "train" / "weights" / "last.pt"
    t0 = time.time()
    if resume and last.is_file():
        model = YOLO(str(last))
        model.train(resume=True)
    else:
        model = YOLO("yolov8n.yaml")
        model.train(data=str(data_yaml), epochs=steps, imgsz=IMGSZ, batch=BATCH, device="cpu",
                    workers=0, amp=False, plots=False, pretrained=False, seed=SEED,
                    deterministic=True, project=str(project), name="train", exist_ok=True,
                    verbose=False, fliplr=0.5, mosaic=1.0, close_mosaic=5)
    best = project / "train" / "weights" / "best.pt"
    final = YOLO(str(best))
    val = final.val(data=str(data_yaml), imgsz=IMGSZ, batch=BATCH, device="cpu", plots=False,
                    workers=0, verbose=False, project=str(project), name="val", exist_ok=True)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    files = export_detector(best, out_dir)
    metrics = {"stage": "detector", "epochs": steps, "imgsz": IMGSZ, "batch": BATCH, "seed": SEED,
               "n_train": N_TRAIN, "n_val": N_VAL, "classes": detector_classes(),
               "mAP50": round(float(val.box.map50), 4), "mAP50_95": round(float(val.box.map), 4),
               "per_class_mAP50": {name: round(float(v), 4) for name, v in
                                   zip(detector_classes(), val.box.ap50)},
               "train_seconds_this_run": round(time.time() - t0, 1),
               "file_bytes": {f.name: f.stat().st_size for f in files}}
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def export_detector(checkpoint: Path, out_dir: Path) -> list[Path]:
    """Write an ultralytics checkpoint's model as out_dir/model.safetensors + model.yaml.

    The checkpoint is read with ultralytics' restricted loader (no code from the file runs); the
    tensors keep the checkpoint's float16. Returns the two paths."""
    from bench.offline import setup_ultralytics_offline
    setup_ultralytics_offline()
    from ultralytics.nn.tasks import torch_safe_load
    from detectors.yolo import MINI_DETECTOR, save_yolo_safetensors

    ckpt, _ = torch_safe_load(str(checkpoint), safe_only=True)
    model = ckpt.get("ema") or ckpt["model"]
    imgsz = (ckpt.get("train_args") or {}).get("imgsz", IMGSZ)
    return save_yolo_safetensors(model, Path(out_dir) / Path(MINI_DETECTOR).name, imgsz)


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "convert":
        print("usage: python -m bench.miniworld.train_detector convert CHECKPOINT.pt OUT_DIR",
              file=sys.stderr)
        return 2
    for path in export_detector(Path(argv[1]), Path(argv[2])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
