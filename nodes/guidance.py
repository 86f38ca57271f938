"""PoS Guidance (PSG) and PoS Attention Capture: MODEL patches for any stock sampler node."""

from __future__ import annotations

import logging

from comfy_api.latest import io, ui

from ..pos_core import attention, guidance

from . import psg_patch
from .common import CATEGORY, PosAttention, PosRelations, require_relations


class PoSGuidance(io.ComfyNode):
    """Gradient guidance on cross-attention so the sampler follows the prompt's spatial relations."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSGuidance",
            display_name="PoS Guidance (PSG)",
            category=CATEGORY,
            description="PoS-based generation: moves the latent on the first steps so each subject's "
                        "cross-attention lies on the right side of its object's. Feed the MODEL to a "
                        "KSampler (or SamplerCustom) with the prompt the relations came from.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x, SD2.x or SDXL model."),
                PosRelations.Input("relations", tooltip="From PoS Relations from Prompt or PoS Relation."),
                io.Float.Input("scale", default=guidance.SCALE, min=0.0, max=1000.0, step=0.5,
                               tooltip="Step size of the latent update (alpha = scale * sqrt(s), s from 1.0 "
                                       "to 0.5 over the steps). 20 is the authors' value; 0 only records "
                                       "attention."),
                io.Float.Input("guided_fraction", default=guidance.GUIDED_FRACTION, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the first steps that are guided (0.5: 25 of 50). The "
                                       "authors used 0.5 on SD1.4 and 0.2 (10 of 50) on SDXL."),
                io.Float.Input("loss_scale", default=-1.0, min=-1.0, max=100000.0, step=1.0,
                               tooltip="Multiplier of the PoS loss. -1 = per model family as the authors: "
                                       "1 for SD1.x/SD2.x, 1000 for SDXL."),
                io.Boolean.Input("smoothing", default=True,
                                 tooltip="Gaussian-smooth the attention maps (kernel 3, sigma 0.5) before "
                                         "the loss, as the authors do."),
                io.Combo.Input("attention_level", options=list(psg_patch.LEVELS), default="auto",
                               tooltip="UNet level whose cross-attention is used. auto = the authors' "
                                       "(16x16 for SD1 at 512 px, 32x32 for SDXL at 1024 px; any size)."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The guided model, for any sampler node."),
                PosAttention.Output(display_name="POS_ATTENTION",
                                    tooltip="Attention recorded while sampling, for PoS Attention Maps."),
            ],
        )

    @classmethod
    def execute(cls, model, relations, scale: float, guided_fraction: float, loss_scale: float,
                smoothing: bool, attention_level: str) -> io.NodeOutput:
        relations = require_relations(relations)
        family = psg_patch.model_family(model)
        if loss_scale < 0:
            loss_scale = guidance.LOSS_SCALE[family]
        settings = psg_patch.Settings(scale=scale, fraction=guided_fraction, loss_scale=loss_scale,
                                      smoothing=smoothing)
        patched, run = psg_patch.patch(model, relations, settings, attention_level)
        note = attention.unguidable_note(relations.relations)
        if note is None:
            return io.NodeOutput(patched, run)
        # depth / near relations have no attention axis: run (and record) rather than stop the queue
        logging.getLogger("pos_spatial").warning(note)
        return io.NodeOutput(patched, run, ui=ui.PreviewText(note))


class PoSAttentionCapture(io.ComfyNode):
    """Record the relations' cross-attention of an unguided run, to compare with a guided one."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSAttentionCapture",
            display_name="PoS Attention Capture",
            category=CATEGORY,
            description="Records the cross-attention of the relations' objects while sampling, "
                        "without changing the image.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x, SD2.x or SDXL model."),
                PosRelations.Input("relations", tooltip="From PoS Relations from Prompt or PoS Relation."),
                io.Combo.Input("attention_level", options=list(psg_patch.LEVELS), default="auto",
                               tooltip="UNet level whose cross-attention is recorded (auto = the authors')."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The same model, recording attention."),
                PosAttention.Output(display_name="POS_ATTENTION",
                                    tooltip="Attention recorded while sampling, for PoS Attention Maps."),
            ],
        )

    @classmethod
    def execute(cls, model, relations, attention_level: str) -> io.NodeOutput:
        relations = require_relations(relations)
        psg_patch.model_family(model)
        patched, run = psg_patch.patch(model, relations, psg_patch.Settings(scale=0.0), attention_level)
        return io.NodeOutput(patched, run)


NODES = [PoSGuidance, PoSAttentionCapture]
