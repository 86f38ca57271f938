"""SR4G Spatial Captions: a COCO-format annotation file -> an image + caption folder in ComfyUI's input
directory (for Load Image and Text Dataset from Folder and LoRA training), and the split's prompts."""

from __future__ import annotations

import json
import os

import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..pos_core.sr4g import RELATIONS, SPLITS, AnnotationError, Options, build, export, prompts
from ..pos_core.sr4g.cli import relation_name
from .common import CATEGORY


def _inside_input(rel: str, what: str, folder: bool) -> str:
    """A path under ComfyUI's input directory, or a clear error."""
    base = os.path.realpath(folder_paths.get_input_directory())
    path = os.path.realpath(os.path.join(base, rel.strip()))
    if not rel.strip() or os.path.commonpath([base, path]) != base:
        raise ValueError(f"{what} {rel!r} must be a path inside ComfyUI's input folder ({base})")
    if not (os.path.isdir(path) if folder else os.path.isfile(path)):
        raise ValueError(f"{what} {rel!r} is not a {'folder' if folder else 'file'} under {base}: put the "
                         f"COCO {'images' if folder else 'instances JSON'} there")
    return path


def _relations(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("", "all"):
        return RELATIONS
    try:
        chosen = {relation_name(t) for t in text.split(",") if t.strip()}
    except Exception as e:  # argparse.ArgumentTypeError
        raise ValueError(f"relations: {e}") from None
    return tuple(r for r in RELATIONS if r in chosen)


class SR4GSpatialCaptions(io.ComfyNode):
    """Derives SR4G's 14-relation captions from COCO annotations and writes the chosen split as image +
    .txt pairs into the input folder, where Load Image and Text Dataset from Folder reads them."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SR4GSpatialCaptions",
            display_name="SR4G Spatial Captions",
            category=CATEGORY,
            description="SR4G (arXiv 2403.00587): captions such as 'a dog to the left of a cat' derived from "
                        "COCO-format boxes and masks for 14 relations, split into train / val / test_seen / "
                        "test_unseen; writes an image + caption folder for LoRA training and gives the prompts.",
            inputs=[
                io.String.Input("annotations", default="coco/annotations/instances_val2017.json",
                                tooltip="COCO instances JSON, relative to ComfyUI's input folder."),
                io.String.Input("images", default="coco/val2017",
                                tooltip="Folder of the annotated images, relative to ComfyUI's input folder."),
                io.String.Input("relations", default="all",
                                tooltip="'all', or some of: " + ", ".join(RELATIONS) + " (comma separated). "
                                        "Use left of, right of, above, below for PoS Guidance prompts."),
                io.Combo.Input("split", options=list(SPLITS), default="train",
                               tooltip="Which split to write: train (seen classes), val, test_seen, or "
                                       "test_unseen (classes never named in train)."),
                io.String.Input("dataset_name", default="sr4g_dataset",
                                tooltip="Folder written in ComfyUI's input folder (replaced on each run); the "
                                        "full triplets.jsonl and summary.json go to output/sr4g/<build id>."),
                io.Int.Input("max_pairs", default=1000, min=0, max=100_000_000,
                             tooltip="At most this many image + caption pairs / prompts (0: all)."),
                io.Int.Input("max_per_image", default=2, min=0, max=1000,
                             tooltip="At most this many captions per image (0: all)."),
                io.Int.Input("split_seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of the unseen classes and of the image split."),
                io.Float.Input("min_area", default=0.02, min=0.0, max=1.0, step=0.005,
                               tooltip="Objects smaller than this share of the image are ignored."),
            ],
            outputs=[
                io.AnyType.Output(display_name="folder",
                                  tooltip="The dataset folder name: connect it to the folder input of Load "
                                          "Image and Text Dataset from Folder."),
                io.String.Output(display_name="prompts", is_output_list=True,
                                 tooltip="The split's distinct captions, one item each (for generation)."),
                io.String.Output(display_name="summary", tooltip="JSON: counts per split and relation."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, annotations, images, **kwargs):
        try:
            return os.path.getmtime(os.path.join(folder_paths.get_input_directory(), annotations))
        except OSError:
            return float("nan")

    @classmethod
    def execute(cls, annotations, images, relations, split, dataset_name, max_pairs, max_per_image, split_seed,
                min_area) -> io.NodeOutput:
        ann_path = _inside_input(annotations, "annotations", folder=False)
        img_dir = _inside_input(images, "images", folder=True)
        name = dataset_name.strip().strip("/\\")
        if not name or os.sep in name or "/" in name or name.startswith("."):
            raise ValueError(f"dataset_name {dataset_name!r}: use a plain folder name such as sr4g_dataset")
        if os.path.realpath(os.path.join(folder_paths.get_input_directory(), name)) == img_dir:
            raise ValueError("dataset_name must differ from the images folder")
        opts = Options(relations=_relations(relations), split_seed=split_seed, max_per_image=max_per_image,
                       min_area=min_area)
        # one build per annotation file and options, shared by every split (and node) that uses them
        out = os.path.join(folder_paths.get_output_directory(), "sr4g", opts.fingerprint(ann_path))
        pbar = [None]

        def progress(k, n):
            if pbar[0] is None:
                pbar[0] = comfy.utils.ProgressBar(n)
            if k % 200 == 0 or k == n:
                pbar[0].update_absolute(k, n)

        try:
            summary = build(ann_path, img_dir, out, opts, progress=progress)
        except AnnotationError as e:
            raise ValueError(f"annotations {annotations!r}: {e}") from None
        rows = prompts(out, split, limit=max_pairs)
        if not rows:
            raise ValueError(f"no {split} captions in {annotations!r} with these settings: choose another split, "
                             "more relations or a lower min_area")
        export(out, img_dir, os.path.join(folder_paths.get_input_directory(), name), "kohya", split,
               limit=max_pairs)
        counts = {"per_split": summary["per_split"], "per_relation": summary["per_relation"],
                  "unseen_categories": summary["unseen_categories"], "exported_split": split}
        return io.NodeOutput(name, [r["prompt"] for r in rows], json.dumps(counts, indent=1))


NODES = [SR4GSpatialCaptions]
