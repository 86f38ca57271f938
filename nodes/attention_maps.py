"""PoS Attention Maps: the recorded cross-attention of each relation drawn over the images."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from comfy_api.latest import io, ui

from ..pos_core.pse import pse_batch
from ..pos_core.relations import AXIS_2D

from .common import CATEGORY, PosAttention

STRIP = 56  # pixels of the marginal plots under and beside each tile
SUBJECT, OBJECT = (255, 70, 50), (60, 140, 255)


def average_maps(run, start: int, end: int) -> tuple[torch.Tensor, list[int]]:
    """Mean [B, G, h, w] maps over the recorded steps in [start, end] (end < 0: last step)."""
    if not run.maps:
        raise ValueError("no attention was recorded: run a sampler with the MODEL of this PoS Guidance or "
                         "PoS Attention Capture node before this node (connect the decoded images)")
    steps = sorted(run.maps)
    last = steps[-1] if end < 0 else end
    chosen = [s for s in steps if start <= s <= last]
    if not chosen:
        raise ValueError(f"no recorded step in start_step..end_step = {start}..{end}; steps recorded: "
                         f"{steps[0]}..{steps[-1]}")
    return torch.stack([run.maps[s] for s in chosen]).mean(dim=0), chosen


def _heat(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(m)[None, None].float()
    t = F.interpolate(t, size=(size[1], size[0]), mode="bilinear", align_corners=False)[0, 0].numpy()
    return t / max(float(t.max()), 1e-12)


def _curve(draw: ImageDraw.ImageDraw, values: np.ndarray, box: tuple[int, int, int, int], color, vertical=False):
    x0, y0, x1, y1 = box
    v = values / max(float(values.max()), 1e-12)
    n = len(v)
    if vertical:
        pts = [(x0 + v[i] * (x1 - x0 - 4) + 2, y0 + (i + 0.5) * (y1 - y0) / n) for i in range(n)]
    else:
        pts = [(x0 + (i + 0.5) * (x1 - x0) / n, y1 - 2 - v[i] * (y1 - y0 - 4)) for i in range(n)]
    draw.line(pts, fill=color, width=2)


def render_tile(image: np.ndarray, map_a: np.ndarray, map_b: np.ndarray, title: str) -> Image.Image:
    """One relation over one image: heatmaps (subject red, object blue) and their x/y marginals."""
    h, w = image.shape[:2]
    ha, hb = _heat(map_a, (w, h)), _heat(map_b, (w, h))
    base = image.astype(np.float32) * 0.45
    over = base + 0.55 * 255 * (ha[..., None] * np.array(SUBJECT) / 255 + hb[..., None] * np.array(OBJECT) / 255)
    tile = Image.new("RGB", (w + STRIP, h + STRIP + 18), (24, 24, 24))
    tile.paste(Image.fromarray(np.clip(over, 0, 255).astype(np.uint8)), (0, 18))
    d = ImageDraw.Draw(tile)
    d.text((4, 3), title, fill=(235, 235, 235))
    for m, color in ((map_a, SUBJECT), (map_b, OBJECT)):
        _curve(d, m.sum(axis=0), (0, h + 18, w, h + 18 + STRIP), color)
        _curve(d, m.sum(axis=1), (w, 18, w + STRIP, h + 18), color, vertical=True)
    return tile


class PoSAttentionMaps(io.ComfyNode):
    """Heatmaps of each relation's subject and object attention, with marginals and attention-PoS."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSAttentionMaps",
            display_name="PoS Attention Maps",
            category=CATEGORY,
            description="Draws the cross-attention recorded during sampling for each relation: subject "
                        "(red) and object (blue) over the image, x/y marginals, and the attention PoS "
                        "score (PSE computed on the attention maps).",
            is_output_node=True,
            inputs=[
                PosAttention.Input("attention", tooltip="From PoS Guidance or PoS Attention Capture, after "
                                                        "the sampler using its MODEL has run."),
                io.Image.Input("images", tooltip="The decoded images of that run, to draw the maps over."),
                io.Int.Input("start_step", default=0, min=0, max=10000,
                             tooltip="First sampler step whose attention is averaged."),
                io.Int.Input("end_step", default=-1, min=-1, max=10000,
                             tooltip="Last step averaged (-1: the last recorded step)."),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="One panel per image, a tile per relation."),
                io.String.Output(display_name="report", tooltip="JSON: attention PoS and loss per image and relation."),
            ],
        )

    @classmethod
    def execute(cls, attention, images, start_step: int, end_step: int) -> io.NodeOutput:
        maps, steps = average_maps(attention, start_step, end_step)
        if images.shape[0] != maps.shape[0]:
            raise ValueError(f"images has {images.shape[0]} images but the run recorded {maps.shape[0]}: "
                             "connect the decoded images of the same sampler run")
        rels, groups = attention.relations.relations, attention.groups
        imgs = (images[..., :3].clamp(0, 1) * 255).byte().cpu().numpy()
        panels, report = [], []
        for i in range(imgs.shape[0]):
            tiles, entry = [], []
            for rel, (ia, ib, name) in zip(rels, attention.pairs):
                a, b = maps[i, ia].numpy(), maps[i, ib].numpy()
                score = float(pse_batch(a[None], b[None], name).scores[0]) if name in AXIS_2D else None
                text = f"{rel.subject} {name} {rel.object}: attention PoS " + (
                    f"{score:.2f}" if score is not None else "n/a")
                tiles.append(render_tile(imgs[i], a, b, text))
                entry.append({"subject": rel.subject, "relation": name, "object": rel.object,
                              "attention_pse": score})
            panel = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
            x = 0
            for t in tiles:
                panel.paste(t, (x, 0))
                x += t.width
            panels.append(torch.from_numpy(np.asarray(panel, dtype=np.float32) / 255.0))
            report.append({"image": i, "steps": [steps[0], steps[-1]], "relations": entry,
                           "guidance_loss": {str(s): attention.losses[s][i] for s in sorted(attention.losses)
                                             if i < len(attention.losses[s])}})
        out = torch.stack(panels)
        return io.NodeOutput(out, json.dumps(report, indent=1), ui=ui.PreviewImage(out, cls=cls))


NODES = [PoSAttentionMaps]
