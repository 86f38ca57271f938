"""Object masks and depth for PSE through transformers: OWLv2 / OWL-ViT or Grounding DINO, SAM, Depth Anything.

As the authors: each object is queried alone, boxes above the threshold become masks (SAM prompted
with the box, best of its multimask outputs, or the filled box without SAM), and all instances of a
class are unioned into one mask. Models load from local folders first, then by hub name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_THRESHOLDS = {"grounding-dino": (0.35, 0.25), "owlv2": (0.1, 0.0), "owlvit": (0.1, 0.0)}
KINDS = ("owlv2", "owlvit", "grounding-dino")


@dataclass
class ObjectMask:
    """One object's detections in one image: boxes (x0, y0, x1, y1), scores and their union mask."""

    label: str
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    mask: torch.Tensor | None = None  # H x W bool, union of all instances

    @property
    def found(self) -> bool:
        return bool(self.boxes)


def resolve(name: str, folders: Sequence[str]) -> tuple[str, bool]:
    """(path or hub name, is_local) of a model: an existing folder, a folder of that name (or with
    "/" as "--") inside one of `folders`, else the hub name itself."""
    if os.path.isdir(name):
        return name, True
    for base in folders:
        for cand in (name, name.replace("/", "--"), name.split("/")[-1]):
            path = os.path.join(base, cand)
            if os.path.isfile(os.path.join(path, "config.json")):
                return path, True
    return name, False


def _load(loader, name: str, folders: Sequence[str], **kwargs):
    path, local = resolve(name, folders)
    try:
        if local:
            kwargs["local_files_only"] = True
        return loader.from_pretrained(path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as e:
        where = ", ".join(folders) or "a local folder"
        raise ValueError(
            f"could not load the model {name!r}: it is not in {where} and could not be fetched from the "
            f"hub ({type(e).__name__}: {str(e).splitlines()[0][:200]}). Download it while online, e.g. "
            f"`huggingface-cli download {name} --local-dir <folder>/{name.replace('/', '--')}` with <folder> "
            f"one of: {where}") from e


def _load_pair(name: str, folders: Sequence[str], auto_model, device):
    from transformers import AutoConfig, AutoProcessor

    cfg = _load(AutoConfig, name, folders)
    model = _load(auto_model, name, folders).to(device).eval()
    processor = _load(AutoProcessor, name, folders)
    return cfg, model, processor


def _pil(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(arr[..., :3])


class Detector:
    """An open-vocabulary detector (+ optional SAM) that turns object names into union masks."""

    def __init__(self, kind: str, model, processor, sam=None, sam_processor=None, name: str = ""):
        if kind not in KINDS:
            raise ValueError(f"detector kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.model, self.processor, self.sam, self.sam_processor = kind, model, processor, sam, sam_processor
        self.name = name
        self.box_threshold, self.text_threshold = DEFAULT_THRESHOLDS[kind]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def boxes(self, image, label: str, threshold: float | None = None) -> tuple[list, list]:
        """Boxes and scores of `label` in one image (queried alone, as the authors do)."""
        pil = _pil(image)
        size = [(pil.height, pil.width)]
        thr = self.box_threshold if threshold is None or threshold < 0 else threshold
        if self.kind == "grounding-dino":
            inputs = self.processor(images=pil, text=f"{label.lower()}.", return_tensors="pt").to(self.device)
            out = self.model(**inputs)
            res = self.processor.post_process_grounded_object_detection(
                out, inputs.input_ids, threshold=thr, text_threshold=self.text_threshold, target_sizes=size)[0]
        else:
            inputs = self.processor(text=[[f"a photo of a {label}"]], images=pil, return_tensors="pt").to(self.device)
            out = self.model(**inputs)
            # OWLv2 pads to a square, so its boxes are scaled by the longer side; OWL-ViT stretches
            side = max(pil.height, pil.width)
            target = [(side, side)] if self.kind == "owlv2" else size
            res = self.processor.post_process_grounded_object_detection(out, threshold=thr, target_sizes=target)[0]
        boxes = res["boxes"].float().cpu()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, pil.width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, pil.height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return [tuple(float(v) for v in b) for b in boxes[keep]], [float(s) for s in res["scores"].cpu()[keep]]

    @torch.no_grad()
    def masks_from_boxes(self, image, boxes: list) -> torch.Tensor:
        """Union mask (H x W bool) of the boxes: SAM's best multimask output per box, or the filled box."""
        pil = _pil(image)
        out = torch.zeros(pil.height, pil.width, dtype=torch.bool)
        if not boxes:
            return out
        if self.sam is None:
            for x0, y0, x1, y1 in boxes:
                out[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
            return out
        dev = next(self.sam.parameters()).device
        inputs = self.sam_processor(images=pil, input_boxes=[[list(b) for b in boxes]], return_tensors="pt").to(dev)
        res = self.sam(**inputs)
        masks = self.sam_processor.post_process_masks(res.pred_masks.cpu(), inputs["original_sizes"].cpu(),
                                                      inputs["reshaped_input_sizes"].cpu())[0]  # [n, 3, H, W]
        best = res.iou_scores[0].argmax(dim=-1).cpu()  # [n]
        for i in range(masks.shape[0]):
            out |= masks[i, best[i]].bool()
        return out

    def find(self, image, label: str, threshold: float | None = None) -> ObjectMask:
        """All instances of `label` in one image, unioned into one mask."""
        boxes, scores = self.boxes(image, label, threshold)
        return ObjectMask(label, boxes, scores, self.masks_from_boxes(image, boxes))


def load_detector(name: str, folders: Sequence[str] = (), sam: str | None = None,
                  device: str | torch.device = "cpu") -> Detector:
    """Detector from a folder or hub name (kind from its config: owlv2, owlvit or grounding-dino)."""
    from transformers import AutoConfig, AutoModelForZeroShotObjectDetection

    cfg = _load(AutoConfig, name, folders)
    kind = {"owlv2": "owlv2", "owlvit": "owlvit", "grounding-dino": "grounding-dino"}.get(cfg.model_type)
    if kind is None:
        raise ValueError(f"{name!r} is a {cfg.model_type!r} model; the detector must be OWLv2, OWL-ViT or "
                         "Grounding DINO")
    _, model, processor = _load_pair(name, folders, AutoModelForZeroShotObjectDetection, device)
    sam_model = sam_processor = None
    if sam:
        from transformers import SamModel, SamProcessor

        sam_model = _load(SamModel, sam, folders).to(device).eval()
        sam_processor = _load(SamProcessor, sam, folders)
    return Detector(kind, model, processor, sam_model, sam_processor, name=name)


class DepthEstimator:
    """Relative (inverse) depth, larger = nearer, as Depth Anything predicts it."""

    def __init__(self, model, processor, name: str = ""):
        self.model, self.processor, self.name = model, processor, name

    @torch.no_grad()
    def predict(self, image) -> torch.Tensor:
        """H x W float depth map of one image, resized to the image."""
        pil = _pil(image)
        dev = next(self.model.parameters()).device
        inputs = self.processor(images=pil, return_tensors="pt").to(dev)
        depth = self.model(**inputs).predicted_depth  # [1, h, w]
        depth = torch.nn.functional.interpolate(depth[:, None].float(), size=(pil.height, pil.width),
                                                mode="bicubic", align_corners=False)[0, 0]
        return depth.clamp_min(0).cpu()


def load_depth(name: str, folders: Sequence[str] = (), device: str | torch.device = "cpu") -> DepthEstimator:
    """Depth Anything (v1 or v2) from a folder or hub name."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation

    cfg = _load(AutoConfig, name, folders)
    if cfg.model_type not in ("depth_anything", "dpt", "zoedepth", "glpn", "depth_pro"):
        raise ValueError(f"{name!r} is a {cfg.model_type!r} model, not a depth estimator (use Depth Anything)")
    model = _load(AutoModelForDepthEstimation, name, folders).to(device).eval()
    return DepthEstimator(model, _load(AutoImageProcessor, name, folders), name=name)


class ColorKeyDetector:
    """Exact masks for scenes whose objects are flat, known colours (the pack's effect testbed).

    Same `find` interface as `Detector`: a pixel belongs to `label` when it lies within `tolerance`
    (RGB distance, 0-1 scale) of the label's colour and nearer to it than to any other known colour.
    """

    def __init__(self, colors: dict[str, Sequence[float]], tolerance: float = 0.25, min_pixels: int = 1):
        if not colors:
            raise ValueError("ColorKeyDetector needs at least one label -> colour")
        self.labels = list(colors)
        self.colors = torch.tensor([list(colors[k])[:3] for k in self.labels], dtype=torch.float32)
        self.tolerance, self.min_pixels, self.name = tolerance, min_pixels, "color-key"

    def masks(self, image) -> dict[str, torch.Tensor]:
        """label -> H x W bool mask of one image (H x W x 3 in 0-1)."""
        img = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).float()
        if img.max() > 1.5:
            img = img / 255.0
        d = torch.cdist(img[..., :3].reshape(-1, 3), self.colors)  # [HW, K]
        near, idx = d.min(dim=1)
        hit = near <= self.tolerance
        h, w = img.shape[:2]
        return {k: ((idx == i) & hit).reshape(h, w) for i, k in enumerate(self.labels)}

    def find(self, image, label: str, threshold: float | None = None) -> ObjectMask:
        """The label's pixels as one mask, with its bounding box (score 1) when there are enough."""
        key = label.lower().strip()
        if key not in self.labels:
            raise ValueError(f"the colour-key detector knows {', '.join(self.labels)}; got {label!r}")
        m = self.masks(image)[key]
        if int(m.sum()) < self.min_pixels:
            return ObjectMask(label, [], [], torch.zeros_like(m))
        ys, xs = torch.nonzero(m, as_tuple=True)
        box = (float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1)
        return ObjectMask(label, [box], [1.0], m)
