"""PSE scoring in ComfyUI: detector and depth loaders, and the PoS Score node."""

from __future__ import annotations

import json
import os

import torch

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io, ui

from ..pos_core import detect, evaluate, scenes
from .common import CATEGORY, PosDepth, PosDetector, PosRelations, require_relations
from .render import panel, render_tile

DETECTORS = ["IDEA-Research/grounding-dino-base", "IDEA-Research/grounding-dino-tiny",
             "google/owlv2-base-patch16-ensemble", "google/owlvit-base-patch32"]
TESTBED_COLORS = "pos-testbed-colors"
SAMS = ["none", "facebook/sam-vit-base", "facebook/sam-vit-huge"]
DEPTHS = ["depth-anything/Depth-Anything-V2-Large-hf", "depth-anything/Depth-Anything-V2-Base-hf",
          "depth-anything/Depth-Anything-V2-Small-hf"]
FOLDER = "pos_models"


def register_folder() -> None:
    """models/pos_models (plus any `pos_models:` entry of extra_model_paths.yaml)."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def folders() -> list[str]:
    return list(folder_paths.get_folder_paths(FOLDER))


def local_models() -> list[str]:
    """Model folders (with a config.json) found in the pos_models folders."""
    out = []
    for base in folders():
        if os.path.isdir(base):
            out += sorted(d for d in os.listdir(base) if os.path.isfile(os.path.join(base, d, "config.json")))
    return out


def _device():
    return comfy.model_management.get_torch_device()


class PoSDetectorLoader(io.ComfyNode):
    """Open-vocabulary detector (Grounding DINO or OWLv2 / OWL-ViT), optionally SAM for masks."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSDetectorLoader",
            display_name="PoS Detector Loader",
            category=CATEGORY,
            description="Loads a detector through transformers from models/pos_models (or a hub name when "
                        "online). The authors use Grounding DINO (base) with SAM.",
            inputs=[
                io.Combo.Input("detector", options=local_models() + DETECTORS + [TESTBED_COLORS],
                               default=DETECTORS[0],
                               tooltip="A folder in models/pos_models, or a hub name downloaded when online. "
                                       f"{TESTBED_COLORS}: exact masks by colour for the pack's built-in testbed "
                                       "model (its demo), no download."),
                io.Combo.Input("sam", options=SAMS + local_models(), default="none",
                               tooltip="SAM model for masks from the boxes (best of its 3 masks); none = "
                                       "filled boxes."),
            ],
            outputs=[PosDetector.Output(display_name="POS_DETECTOR", tooltip="For PoS Score and PoS Seed Search.")],
        )

    @classmethod
    def execute(cls, detector: str, sam: str) -> io.NodeOutput:
        if detector == TESTBED_COLORS:
            return io.NodeOutput(detect.ColorKeyDetector(scenes.colors()))
        return io.NodeOutput(detect.load_detector(detector, folders(), None if sam == "none" else sam, _device()))


class PoSDepthLoader(io.ComfyNode):
    """Depth Anything, for front / behind relations."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSDepthLoader",
            display_name="PoS Depth Loader",
            category=CATEGORY,
            description="Loads Depth Anything through transformers from models/pos_models (or a hub name).",
            inputs=[io.Combo.Input("depth_model", options=local_models() + DEPTHS, default=DEPTHS[0],
                                   tooltip="A folder in models/pos_models, or a hub name downloaded when online. "
                                           "The authors use Depth Anything V2 Large.")],
            outputs=[PosDepth.Output(display_name="POS_DEPTH", tooltip="For front / behind in PoS Score.")],
        )

    @classmethod
    def execute(cls, depth_model: str) -> io.NodeOutput:
        return io.NodeOutput(detect.load_depth(depth_model, folders(), _device()))


def _mask_at(masks, i: int, name: str, size: tuple[int, int]) -> torch.Tensor:
    m = masks[min(i, masks.shape[0] - 1)] if masks.ndim == 3 else masks
    if tuple(m.shape) != size:
        raise ValueError(f"{name} is {tuple(m.shape)} but the images are {size}: resize the mask to the image")
    return m


def score_images(images: torch.Tensor, relations, detector=None, depth=None, subject_masks=None,
                 object_masks=None, threshold: float = -1.0, pbar=None) -> list[list[dict]]:
    """Per image, per relation: PSE, flags and baselines (masks for relation 1 may come from MASK inputs)."""
    rels = relations.relations
    h, w = images.shape[1:3]
    needs_depth = any(r.relation in ("front", "behind") for r in rels)
    if needs_depth and depth is None:
        raise ValueError("a front/behind relation needs depth: connect PoS Depth Loader to depth_model")
    out = []
    for i in range(images.shape[0]):
        comfy.model_management.throw_exception_if_processing_interrupted()
        img = images[i]
        dmap = depth.predict(img) if needs_depth else None
        cache: dict[str, evaluate.Masks] = {}

        def find(label: str) -> evaluate.Masks:
            if label not in cache:
                om = detector.find(img, label, threshold)
                cache[label] = evaluate.Masks(om.mask, om.boxes, om.scores)
            return cache[label]

        res = []
        for k, r in enumerate(rels):
            given = k == 0 and subject_masks is not None and object_masks is not None
            if given:
                a = evaluate.from_mask(_mask_at(subject_masks, i, "subject_masks", (h, w)))
                b = evaluate.from_mask(_mask_at(object_masks, i, "object_masks", (h, w)))
            elif detector is None:
                raise ValueError("no masks for the relations: connect a PoS Detector Loader to detector, or "
                                 "subject_masks and object_masks (used for the first relation)")
            else:
                a, b = find(r.subject), find(r.object)
            entry = {"subject": r.subject, "object": r.object,
                     **evaluate.score_relation(a, r.relation, b, dmap)}
            entry["_masks"] = (a.mask, b.mask)
            res.append(entry)
        out.append(res)
        if pbar is not None:
            pbar.update(1)
    return out


def _title(r: dict) -> str:
    if r["pse"] is None:
        return f"{r['subject']} {r['relation']} {r['object']}: not scored"
    miss = " (missing: " + ", ".join(n for n, f in (("subject", r["missing_subject"]),
                                                   ("object", r["missing_object"])) if f) + ")"
    text = f"{r['subject']} {r['relation']} {r['object']}: PSE {r['pse']:.2f}"
    if "visor" in r:
        text += f" | VISOR {'y' if r['visor'] else 'n'} GenEval {'y' if r['geneval'] else 'n'} " \
                f"CompBench {r['t2i_compbench']:.2f}"
    return text + (miss if r["missing_subject"] or r["missing_object"] else "")


class PoSScore(io.ComfyNode):
    """PSE of each image for the relations, with the center-based baselines beside it."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSScore",
            display_name="PoS Score (PSE)",
            category=CATEGORY,
            description="Scores how well each image follows the relations: PSE in [0, 1] from object masks "
                        "(detector, or MASK inputs for the first relation), with depth for front/behind.",
            is_output_node=True,
            inputs=[
                io.Image.Input("images", tooltip="The images to score (a batch)."),
                PosRelations.Input("relations", tooltip="From PoS Relations from Prompt or PoS Relation."),
                PosDetector.Input("detector", optional=True,
                                  tooltip="PoS Detector Loader: finds every object by name (all instances unioned)."),
                PosDepth.Input("depth_model", optional=True, tooltip="PoS Depth Loader: needed for front / behind."),
                io.Mask.Input("subject_masks", optional=True,
                              tooltip="Masks of the first relation's subject from any segmentation node "
                                      "(one per image, or one for all)."),
                io.Mask.Input("object_masks", optional=True,
                              tooltip="Masks of the first relation's object, as subject_masks."),
                io.Float.Input("threshold", default=-1.0, min=-1.0, max=1.0, step=0.01,
                               tooltip="Detector box threshold; -1 = the authors' (0.35 Grounding DINO, text "
                                       "0.25; 0.1 OWL as VISOR)."),
            ],
            outputs=[
                io.Float.Output(display_name="pse", is_output_list=True,
                                tooltip="Per-image PSE (mean over its relations; missing objects count 0)."),
                io.Float.Output(display_name="mean_pse", tooltip="Mean PSE over the images."),
                io.String.Output(display_name="report",
                                 tooltip="JSON: per image and relation PSE, missing flags, VISOR / GenEval / "
                                         "T2I-CompBench verdicts, and the aggregates."),
                io.Image.Output(display_name="overlay", tooltip="Masks (subject red, object blue), marginals "
                                                                "and verdicts over each image."),
            ],
        )

    @classmethod
    def execute(cls, images, relations, detector=None, depth_model=None, subject_masks=None, object_masks=None,
                threshold: float = -1.0) -> io.NodeOutput:
        require_relations(relations)
        if (subject_masks is None) != (object_masks is None):
            raise ValueError("connect both subject_masks and object_masks, or neither")
        pbar = comfy.utils.ProgressBar(images.shape[0])
        per_image = score_images(images, relations, detector, depth_model, subject_masks, object_masks,
                                 threshold, pbar)
        imgs = (images[..., :3].clamp(0, 1) * 255).byte().cpu().numpy()
        overlays = []
        for i, rs in enumerate(per_image):
            tiles = []
            for r in rs:
                a, b = (m.float().cpu().numpy() for m in r.pop("_masks"))
                tiles.append(render_tile(imgs[i], a, b, _title(r)))
            overlays.append(panel(tiles))
        summary = evaluate.summarize(per_image)
        scores = [evaluate.image_score(rs) for rs in per_image]
        report = json.dumps({"images": [{"image": i, "pse": s, "relations": rs}
                                        for i, (s, rs) in enumerate(zip(scores, per_image))],
                             "aggregate": summary}, indent=1)
        overlay = torch.stack(overlays)
        return io.NodeOutput(scores, summary["mean_pse"], report, overlay, ui=ui.PreviewImage(overlay, cls=cls))


NODES = [PoSDetectorLoader, PoSDepthLoader, PoSScore]
