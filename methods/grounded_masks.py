"""Masks of a named object in images: an open-vocabulary detector's boxes, a promptable
segmenter's masks inside them (Grounded-SAM: GroundingDINO, then SAM / SAM-HQ).

Both models are loaded with transformers by Hugging Face name or local folder
(``AutoModelForZeroShotObjectDetection`` -- GroundingDINO, OWL-ViT, OWLv2 -- and ``AutoModel``
-- SAM, SAM-HQ -- each with its ``AutoProcessor``); nothing is downloaded unless the name is not
in the local cache and the machine is online.

    segmenter = GroundedSegmenter.load("IDEA-Research/grounding-dino-tiny",
                                       "syscv-community/sam-hq-vit-huge", device="cuda")
    masks = segmenter.masks(images, "church")   # per PIL image: float (H, W) in {0, 1}

An image in which the detector finds nothing above ``box_threshold`` gets an empty mask.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from bench.core.errors import EraselabError, shorten


def _load(kind: str, name: str, model_loader: str, device):
    import transformers

    try:
        processor = transformers.AutoProcessor.from_pretrained(name)
        model = getattr(transformers, model_loader).from_pretrained(name)
    except (OSError, ValueError, KeyError) as exc:
        lines = str(exc).strip().splitlines()
        why = shorten(lines[0] if lines else type(exc).__name__)
        raise EraselabError(f"cannot load the {kind} {name!r} (a Hugging Face name in the local "
                            f"cache, or a folder): {why}") from None
    return processor, model.to(device).eval()


class GroundedSegmenter:
    """An open-vocabulary detector and a box-prompted segmenter, used together."""

    def __init__(self, detector, detector_processor, segmenter, segmenter_processor,
                 box_threshold: float = 0.3, text_threshold: float = 0.25):
        self.detector, self.detector_processor = detector, detector_processor
        self.segmenter, self.segmenter_processor = segmenter, segmenter_processor
        self.box_threshold, self.text_threshold = box_threshold, text_threshold

    @classmethod
    def load(cls, detector: str, segmenter: str, device="cpu", box_threshold: float = 0.3,
             text_threshold: float = 0.25) -> "GroundedSegmenter":
        det_proc, det = _load("detector", detector, "AutoModelForZeroShotObjectDetection", device)
        seg_proc, seg = _load("segmenter", segmenter, "AutoModel", device)
        return cls(det, det_proc, seg, seg_proc, box_threshold, text_threshold)

    @torch.no_grad()
    def boxes(self, image, text: str) -> list[list[float]]:
        """Boxes (x0, y0, x1, y1, pixels) the detector finds for ``text`` in one PIL image."""
        proc = self.detector_processor
        inputs = proc(text=[[text]], images=image, return_tensors="pt").to(self.detector.device)
        outputs = self.detector(**inputs)
        # GroundingDINO's post-processing also takes the prompt's ids and a text threshold
        accepted = inspect.signature(proc.post_process_grounded_object_detection).parameters
        extra = {k: v for k, v in (("input_ids", inputs.get("input_ids")),
                                   ("text_threshold", self.text_threshold)) if k in accepted}
        found = proc.post_process_grounded_object_detection(
            outputs, threshold=self.box_threshold, target_sizes=[(image.height, image.width)], **extra)[0]
        return found["boxes"].float().cpu().tolist()

    @torch.no_grad()
    def masks(self, images, text: str) -> list[np.ndarray]:
        """Per image, the union of the segmenter's masks in every box found for ``text``."""
        out = []
        for image in images:
            image = image.convert("RGB")
            boxes = self.boxes(image, text)
            if not boxes:
                out.append(np.zeros((image.height, image.width), np.float32))
                continue
            proc = self.segmenter_processor
            inputs = proc(images=image, input_boxes=[boxes], return_tensors="pt").to(self.segmenter.device)
            pred = self.segmenter(**inputs, multimask_output=False).pred_masks
            masks = proc.image_processor.post_process_masks(
                pred.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu())[0]
            out.append(masks.reshape(-1, image.height, image.width).any(0).float().numpy())
        return out
