"""PoS Guidance (PSG) and PoS Attention Capture: MODEL patches for any stock sampler node."""

from __future__ import annotations

import logging

from comfy_api.latest import io, ui

from ..pos_core import attention, guidance

from . import psg_patch
from .common import CATEGORY, PosAttention, PosRelations, require_relations
from .families import family_of
from .families.dit import BLOCKS_HELP

MODEL_TIP = ("An SD1.x, SD2.x or SDXL model, or a Flux.1 (dev, schnell) or SD3 / SD3.5 (medium, large) model as "
             "Load Diffusion Model or Load Checkpoint gives it (FluxGuidance / ModelSampling nodes are fine).")


def dit_inputs() -> list:
    """The inputs that only Flux.1 and SD3 read: which joint-attention blocks, and which softmax."""
    return [
        io.String.Input("blocks", default="auto", optional=True,
                        tooltip="Flux / SD3 only: the blocks whose image-to-text attention is used. " + BLOCKS_HELP
                                + ". auto = the five blocks with the best maps in Exploring MM-DiT (ICCV 2025): "
                                "Flux.1 double blocks 11,12,14,17,18; SD3-medium 4,5,7,8,9; SD3.5-medium "
                                "5,7,8,9,10; SD3.5-large 16,18,20,21,24 (same relative depth on other depths). "
                                "maps = the model picks: on the first step of each run one extra pass records "
                                "every block's maps, the blocks whose object maps are most concentrated and "
                                "least overlapping are kept (up to 5), and the node's text and the log say which."),
        io.Combo.Input("softmax", options=list(psg_patch.SOFTMAX), default="text", optional=True,
                       tooltip="Flux / SD3 only: text = softmax of each image query over the text keys "
                               "(Learn-to-Steer; the joint row's thousands of image keys dilute text attention); "
                               "joint = the model's own softmax over the whole joint row."),
    ]


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
                io.Model.Input("model", tooltip=MODEL_TIP),
                PosRelations.Input("relations", tooltip="From PoS Relations from Prompt or PoS Relation."),
                io.Float.Input("scale", default=guidance.SCALE, min=0.0, max=1000.0, step=0.5,
                               tooltip="Step size of the latent update (alpha = scale * sqrt(s), s from 1.0 "
                                       "to 0.5 over the steps). 20 is the authors' value (all families; on "
                                       "Flux / SD3 the step is taken on the model input x itself, c_in = 1); "
                                       "0 only records attention."),
                io.Float.Input("guided_fraction", default=guidance.GUIDED_FRACTION, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the first steps that are guided (0.5: 25 of 50). The "
                                       "authors used 0.5 on SD1.4 and 0.2 (10 of 50) on SDXL; 0.5 on Flux dev "
                                       "and SD3 (Learn-to-Steer guides the first 25 of 50 on FLUX.1-dev); "
                                       "0.25 on Flux schnell at 4 steps (its first step only)."),
                io.Float.Input("loss_scale", default=-1.0, min=-1.0, max=100000.0, step=1.0,
                               tooltip="Multiplier of the PoS loss. -1 = per model family: 1 for SD1.x/SD2.x "
                                       "and 1000 for SDXL (the authors'), 1000 for Flux.1 and SD3 (deep "
                                       "transformer stacks, as SDXL)."),
                io.Boolean.Input("smoothing", default=True,
                                 tooltip="Gaussian-smooth the attention maps (kernel 3, sigma 0.5) before "
                                         "the loss, as the authors do."),
                io.Combo.Input("attention_level", options=list(psg_patch.LEVELS), default="auto",
                               tooltip="UNet level whose cross-attention is used. auto = the authors' "
                                       "(16x16 for SD1 at 512 px, 32x32 for SDXL at 1024 px; any size). "
                                       "maps = the level whose object maps are most concentrated and least "
                                       "overlapping on the first step of each run (one extra pass; the node's "
                                       "text says which). Flux / SD3: leave on auto and choose blocks."),
                *dit_inputs(),
                # last, so saved workflows (positional widgets_values) keep every earlier value in place
                io.Combo.Input("objective", options=list(guidance.OBJECTIVES), default="pos", optional=True,
                               tooltip="What the gradient lowers on the same maps, steps and scale. pos = the "
                                       "paper's Probability-of-Superiority loss P(wrong order)^2 on the attention "
                                       "marginals; center = a hinge on the maps' centres of mass, "
                                       "relu(0.1 + cx_subject - cx_object)^2 for 'left of' (the relation's axis; "
                                       "0 once the centres are 0.1 of the image apart on the stated side)."),
                io.Float.Input("max_step", default=-1.0, min=-1.0, max=10.0, step=0.01, optional=True,
                               tooltip="Step rule: the largest move of one guided step, as a fraction of the "
                                       "current noise level (root-mean-square over the latent); a longer step is "
                                       "shortened. -1 = per model family: 0 (no limit, the paper's step) for "
                                       "SD1.x / SD2.x / SDXL, 0.3 for Flux.1 and SD3. Lower it (0.05) when "
                                       "guided images turn to noise, blotches or flat colour: the step threw "
                                       "the latent out of what the model can denoise."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The guided model, for any sampler node."),
                PosAttention.Output(display_name="POS_ATTENTION",
                                    tooltip="Attention recorded while sampling, for PoS Attention Maps."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, relations, scale: float, guided_fraction: float, loss_scale: float,
                smoothing: bool, attention_level: str, blocks: str = "auto", softmax: str = "text",
                objective: str = "pos", max_step: float = -1.0) -> io.NodeOutput:
        relations = require_relations(relations)
        family = family_of(model)
        if loss_scale < 0:
            loss_scale = family.loss_scale
        if max_step < 0:
            max_step = family.max_step
        settings = psg_patch.Settings(scale=scale, fraction=guided_fraction, loss_scale=loss_scale,
                                      smoothing=smoothing, softmax=softmax, objective=objective,
                                      max_step=max_step)
        patched, run = psg_patch.patch(model, relations, settings, attention_level, blocks,
                                       node_id=cls.hidden.unique_id if cls.hidden else None)
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
                io.Model.Input("model", tooltip=MODEL_TIP),
                PosRelations.Input("relations", tooltip="From PoS Relations from Prompt or PoS Relation."),
                io.Combo.Input("attention_level", options=list(psg_patch.LEVELS), default="auto",
                               tooltip="UNet level whose cross-attention is recorded (auto = the authors'; "
                                       "maps = chosen from the maps on the first step). "
                                       "Flux / SD3: leave on auto and choose blocks."),
                *dit_inputs(),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The same model, recording attention."),
                PosAttention.Output(display_name="POS_ATTENTION",
                                    tooltip="Attention recorded while sampling, for PoS Attention Maps."),
            ],
        )

    @classmethod
    def execute(cls, model, relations, attention_level: str, blocks: str = "auto",
                softmax: str = "text") -> io.NodeOutput:
        relations = require_relations(relations)
        family_of(model)
        patched, run = psg_patch.patch(model, relations, psg_patch.Settings(scale=0.0, softmax=softmax),
                                       attention_level, blocks)
        return io.NodeOutput(patched, run)


NODES = [PoSGuidance, PoSAttentionCapture]
