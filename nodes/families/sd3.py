"""SD3 / SD3.5 (medium, large): joint attention of the MM-DiT joint blocks.

ComfyUI builds the joint sequence as cat(context, x): text (CLIP chunks, then T5) first. Unguided steps
run the stock blocks and record maps through an attention override; the gradient pass runs the block
mixing itself, without the activation checkpointing the stock replace path asks for (checkpointing
re-runs the block in backward and would record the maps twice), up to the last chosen block.
"""

from __future__ import annotations

import torch
from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

from .base import Family, StopForward
from .dit import grad_capture, heads_view, sdpa, stack_candidates, stack_targets, with_capture

# Exploring MM-DiT (ICCV 2025): the five blocks with the best text-image maps, per published model
PUBLISHED = {"sd3-medium": ([4, 5, 7, 8, 9], 24), "sd3.5-medium": ([5, 7, 8, 9, 10], 24),
             "sd3.5-large": ([16, 18, 20, 21, 24], 38)}
LOSS_SCALE = 1000.0  # as SDXL: deep transformer stacks give small attention gradients
# each guided move at most this x sigma (RMS): at the loss scale above, the uncapped step threw the Flux testbed's
# latents far out of range; 0.05 / 0.1 / 0.3 kept all in range there on validation, 0.3 the gentlest cap
MAX_STEP = 0.3


def variant(dm) -> str:
    """Which published SD3 model a MMDiT is shaped like (by width and SD3.5-medium's image-only attn2)."""
    if dm.hidden_size >= 2432:
        return "sd3.5-large"
    return "sd3.5-medium" if dm.x_block_self_attn_layers else "sd3-medium"


def _flat_sdpa(q, k, v, heads: int, capture=None):
    qh, kh, vh = (heads_view(t, heads, False) for t in (q, k, v))
    if capture is not None:
        capture(qh, kh)
    return sdpa(qh, kh, vh)


def mix_forward(block, context, x, c, capture=None):
    """mmdit._block_mixing without checkpointing and with the gradient pass's attention."""
    cb, xb = block.context_block, block.x_block
    context_qkv, context_intermediates = cb.pre_attention(context, c)
    if xb.x_block_self_attn:
        x_qkv, x_qkv2, x_intermediates = xb.pre_attention_x(x, c)
    else:
        x_qkv, x_intermediates = xb.pre_attention(x, c)
    qkv = [torch.cat((context_qkv[t], x_qkv[t]), dim=1) for t in range(3)]
    attn = _flat_sdpa(*qkv, heads=xb.attn.num_heads, capture=capture)
    context_attn, x_attn = attn[:, : context_qkv[0].shape[1]], attn[:, context_qkv[0].shape[1]:]
    context = cb.post_attention(context_attn, *context_intermediates) if not cb.pre_only else None
    if xb.x_block_self_attn:
        attn2 = _flat_sdpa(*x_qkv2, heads=xb.attn2.num_heads)
        x = xb.post_attention_x(x_attn, attn2, *x_intermediates)
    else:
        x = xb.post_attention(x_attn, *x_intermediates)
    return context, x


class SD3Family(Family):
    """SD3 / SD3.5: maps from chosen joint blocks; default the published best blocks of the variant."""

    name = "sd3"
    label = "SD3"
    loss_scale = LOSS_SCALE
    max_step = MAX_STEP

    def __init__(self, model):
        super().__init__(model)
        self.depth = len(self.dm.joint_blocks)
        self.variant = variant(self.dm)

    def targets(self, level: str, blocks: str) -> list[tuple]:
        return stack_targets(self, level, blocks, *PUBLISHED[self.variant], self.depth)

    def candidates(self) -> list[tuple[str, list[tuple]]]:
        return stack_candidates(self.depth)

    def grid(self, hw) -> tuple[int, int]:
        p = self.dm.patch_size
        return (int(hw[0]) + p - 1) // p, (int(hw[1]) + p - 1) // p

    def install(self, m, run) -> None:
        existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        last = run.targets[-1][1]  # "maps": the last candidate, so every block is patched until the run chooses
        for i in range(last + 1):
            key = ("double_block", i)
            m.set_model_patch_replace(self._patch(run, i, existing.get(key)), "dit", *key)

    def _patch(self, run, i: int, previous):
        block = self.dm.joint_blocks[i]
        key = ("double_block", i)

        def stock(args, extra):
            if previous is not None:
                return previous(args, extra)
            out = {}
            out["txt"], out["img"] = block(args["txt"], args["img"], c=args["vec"], use_checkpoint=self.dm.use_checkpoint,
                                           transformer_options=args["transformer_options"])
            return out

        def patch(args, extra):
            txt_len = args["txt"].shape[1]
            if run.active and run.scoring:  # "maps": every candidate records, into its own list
                run.layer_maps = []
                out = stock(with_capture(run, args, txt_len), extra)
                run.block_maps[key] = run.layer_maps
                run.layer_maps = []
                return out
            chosen, last = key in run.targets, key == run.targets[-1]  # read per call: "maps" changes them
            if run.active and run.guiding:
                cap = grad_capture(run, txt_len, last, args.get("transformer_options")) if chosen else None
                txt, img = mix_forward(block, args["txt"], args["img"], args["vec"], cap)
                if last:
                    raise StopForward
                return {"txt": txt, "img": img}
            if run.active and chosen:
                args = with_capture(run, args, txt_len)
            return stock(args, extra)

        return patch


def detect(model) -> Family | None:
    """The SD3 family for an SD3 / SD3.5 MODEL, else None."""
    import comfy.model_base

    dm = getattr(model.model, "diffusion_model", None)
    if not isinstance(model.model, comfy.model_base.SD3) or type(dm) is not OpenAISignatureMMDITWrapper:
        return None
    if dm.register_length or dm.context_processor is not None:
        return None
    return SD3Family(model)
