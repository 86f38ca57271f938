"""PoS Attention Maps: the recorded cross-attention of each relation drawn over the images."""

from __future__ import annotations

import json

import torch

from comfy_api.latest import io, ui

from ..pos_core.pse import pse_batch
from ..pos_core.relations import AXIS_2D

from .common import CATEGORY, PosAttention
from .render import panel, render_tile


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
        rels = attention.relations.relations
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
            panels.append(panel(tiles))
            report.append({"image": i, "steps": [steps[0], steps[-1]], "relations": entry,
                           "guidance_loss": {str(s): attention.losses[s][i] for s in sorted(attention.losses)
                                             if i < len(attention.losses[s])}})
        out = torch.stack(panels)
        return io.NodeOutput(out, json.dumps(report, indent=1), ui=ui.PreviewImage(out, cls=cls))


NODES = [PoSAttentionMaps]
