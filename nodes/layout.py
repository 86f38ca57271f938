"""PoS Layout from Relations: the relations' sides as regional prompts (one per object), no gradient.

What a user would build by hand with CLIP Text Encode + Conditioning (Set Area with Percentage) +
Conditioning (Combine) per object, with the boxes computed from the relations (pos_core.layout).
"""

from __future__ import annotations

import node_helpers
from PIL import Image, ImageDraw

from comfy_api.latest import io, ui

from ..pos_core import layout

from .common import CATEGORY, PosRelations, require_relations
from .render import to_tensor

PREVIEW = 384  # the preview's longer side, pixels
COLORS = [(255, 70, 50), (60, 140, 255), (80, 200, 90), (240, 190, 40), (200, 90, 220), (40, 200, 200)]


def region_preview(regions: dict[str, layout.Region], width: int, height: int):
    """The regions as labelled boxes on a dark canvas of the image's aspect ([1, H, W, 3] in [0, 1])."""
    s = PREVIEW / max(width, height)
    w, h = max(1, round(width * s)), max(1, round(height * s))
    im = Image.new("RGB", (w, h), (24, 24, 24))
    d = ImageDraw.Draw(im)
    for i, (name, (x, y, rw, rh)) in enumerate(regions.items()):
        c = COLORS[i % len(COLORS)]
        box = (x * w + 2 * i, y * h + 2 * i, (x + rw) * w - 1 - 2 * i, (y + rh) * h - 1 - 2 * i)
        d.rectangle(box, outline=c, width=3)
        d.text((box[0] + 6, box[1] + 6 + 14 * i), name, fill=c)
    return to_tensor(im)[None]


class PoSLayoutFromRelations(io.ComfyNode):
    """The relations' sides as regional conditioning: each object's phrase on its own box."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSLayoutFromRelations",
            display_name="PoS Layout from Relations",
            category=CATEGORY,
            description="Regional prompting from the relations: each object's phrase is given its side of the "
                        "image (left / right / above / below halves, bands for three objects), added to the "
                        "whole prompt. No gradient; composes with PoS Guidance.",
            inputs=[
                io.Clip.Input("clip", tooltip="The CLIP the prompt is encoded with: it encodes each object's phrase."),
                io.Conditioning.Input("conditioning",
                                      tooltip="The whole prompt's conditioning (PoS Relations from Prompt's "
                                              "CONDITIONING). It stays first and covers the whole image."),
                PosRelations.Input("relations", tooltip="The relations to lay out (PoS Relations from Prompt "
                                                        "or PoS Relation). Left, right, above and below place "
                                                        "objects; front, behind and near are skipped."),
                io.String.Input("object_prompt", default="a {object}",
                                tooltip="The prompt of each object's region; {object} becomes the object's "
                                        "words (e.g. 'a photo of a {object}, detailed')."),
                io.Float.Input("margin", default=layout.MARGIN, min=0.0, max=0.2, step=0.0125,
                               tooltip="Gap left at each inner edge of a region, as a fraction of the image "
                                       "side: two halves end up twice this apart."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Weight of each region's prompt inside its box (as Conditioning "
                                       "(Set Area)'s strength)."),
                io.Int.Input("width", default=1024, min=16, max=16384, step=8,
                             tooltip="Image width, for the preview's aspect only (regions are fractions)."),
                io.Int.Input("height", default=1024, min=16, max=16384, step=8,
                             tooltip="Image height, for the preview's aspect only (regions are fractions)."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="CONDITIONING",
                                       tooltip="The whole prompt, then one area-conditioned prompt per object: "
                                               "the positive input of your sampler."),
                io.Image.Output(display_name="layout", tooltip="The regions as labelled boxes."),
                io.String.Output(display_name="regions",
                                 tooltip="Each object's box (x, y, width, height as fractions of the image) "
                                         "and any relation that was skipped."),
            ],
        )

    @classmethod
    def execute(cls, clip, conditioning, relations, object_prompt: str = "a {object}", margin: float = layout.MARGIN,
                strength: float = 1.0, width: int = 1024, height: int = 1024) -> io.NodeOutput:
        if clip is None:
            raise ValueError("clip is empty: connect the CLIP output of your checkpoint loader")
        if not conditioning:
            raise ValueError("conditioning is empty: connect PoS Relations from Prompt's CONDITIONING "
                             "(the whole prompt, encoded)")
        rels = require_relations(relations)
        if "{object}" not in object_prompt:
            raise ValueError(f"object_prompt {object_prompt!r} has no {{object}}: write where the object's words "
                             "go, e.g. 'a {object}'")
        placeable, skipped = layout.split_placeable([(r.subject, r.relation, r.object) for r in rels.relations])
        if not placeable:
            raise ValueError("relations: none of " + ", ".join(f"'{s} {r} {o}'" for s, r, o in skipped) +
                             " has a side in the image plane; a layout places left, right, above and below "
                             "only (use PoS Guidance for front, behind and near)")
        try:
            regions = layout.regions(placeable, margin)
        except ValueError as e:
            raise ValueError(f"relations / margin: {e}") from e
        out = list(conditioning)
        for name, (x, y, w, h) in regions.items():
            part = clip.encode_from_tokens_scheduled(clip.tokenize(object_prompt.replace("{object}", name)))
            out += node_helpers.conditioning_set_values(part, {"area": ("percentage", h, w, y, x),
                                                               "strength": strength, "set_area_to_bounds": False})
        lines = [f"{n}: x {x:.3f}  y {y:.3f}  w {w:.3f}  h {h:.3f}" for n, (x, y, w, h) in regions.items()]
        lines += [f"skipped (no side in the image plane): {s} {r} {o}" for s, r, o in skipped]
        preview = region_preview(regions, width, height)
        return io.NodeOutput(out, preview, "\n".join(lines), ui=ui.PreviewImage(preview, cls=cls))


NODES = [PoSLayoutFromRelations]
