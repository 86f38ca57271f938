"""Flux.1 (dev, schnell and fine-tunes loaded as Flux): joint attention of the double / single stream blocks.

Text is first in the joint sequence (T5 tokens only). Unguided steps run the stock blocks and record maps
through an attention override; the gradient pass runs out-of-place copies of the stock block code (the
stock blocks add to `txt` / `x` in place, which autograd cannot differentiate) up to the last chosen
block and stops right after that block's maps.
"""

from __future__ import annotations

import torch
from comfy.ldm.flux.layers import DoubleStreamBlock, SingleStreamBlock, apply_mod
from comfy.ldm.flux.model import Flux

from .base import Family, StopForward
from .dit import MAPS, block_label, grad_capture, parse_blocks, scaled, sdpa, with_capture

# Exploring MM-DiT (ICCV 2025): the five double blocks of FLUX.1-dev with the best text-image maps
PUBLISHED_BLOCKS, PUBLISHED_DEPTH = [11, 12, 14, 17, 18], 19
LOSS_SCALE = 1000.0  # as SDXL: deep transformer stacks give small attention gradients
# each guided move at most this x sigma (RMS): at the loss scale above, the uncapped step threw the Flux testbed's
# latents far out of range; 0.05 / 0.1 / 0.3 kept all in range there on validation, 0.3 the gentlest cap
MAX_STEP = 0.3


def _host_rope():
    """ComfyUI's own rope where its Flux attention calls one (0.33+: apply_rope, differentiable while the
    gradient pass sets in_training), else None: 0.3.x rotates inline, as `_rope` below does."""
    import inspect

    import comfy.ldm.flux.math as flux_math

    try:
        uses = "apply_rope(" in inspect.getsource(flux_math.attention)
    except (OSError, TypeError):
        uses = False
    return flux_math.apply_rope if uses and hasattr(flux_math, "apply_rope") else None


HOST_ROPE = _host_rope()


def _rope(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe):
    """q, k rotated as comfy.ldm.flux.math.attention rotates them."""
    if pe is None:
        return q, k
    if HOST_ROPE is not None:
        return HOST_ROPE(q, k, pe)
    q_shape, k_shape = q.shape, k.shape
    q = q.to(dtype=pe.dtype).reshape(*q.shape[:-1], -1, 1, 2)
    k = k.to(dtype=pe.dtype).reshape(*k.shape[:-1], -1, 1, 2)
    q = (pe[..., 0] * q[..., 0] + pe[..., 1] * q[..., 1]).reshape(*q_shape).type_as(v)
    k = (pe[..., 0] * k[..., 0] + pe[..., 1] * k[..., 1]).reshape(*k_shape).type_as(v)
    return q, k


def _attention(q, k, v, pe, mask, capture):
    q, k = _rope(q, k, v, pe)
    if capture is not None:
        capture(q, k)
    return sdpa(q, k, v, mask)


def double_forward(blk, img, txt, vec, pe, attn_mask=None, capture=None):
    """DoubleStreamBlock.forward without in-place updates (text first, no modulation dims). A block without
    its own modulation (Flux.2's global modulation, Chroma's approximator) gets it in `vec`, as the stock
    block does: ((img_mod1, img_mod2), (txt_mod1, txt_mod2))."""
    if getattr(blk, "img_mod", None) is not None:
        img_mod1, img_mod2 = blk.img_mod(vec)
        txt_mod1, txt_mod2 = blk.txt_mod(vec)
    else:
        (img_mod1, img_mod2), (txt_mod1, txt_mod2) = vec
    img_modulated = apply_mod(blk.img_norm1(img), (1 + img_mod1.scale), img_mod1.shift)
    img_qkv = blk.img_attn.qkv(img_modulated)
    img_q, img_k, img_v = img_qkv.view(img_qkv.shape[0], img_qkv.shape[1], 3, blk.num_heads, -1).permute(2, 0, 3, 1, 4)
    img_q, img_k = blk.img_attn.norm(img_q, img_k, img_v)
    txt_modulated = apply_mod(blk.txt_norm1(txt), (1 + txt_mod1.scale), txt_mod1.shift)
    txt_qkv = blk.txt_attn.qkv(txt_modulated)
    txt_q, txt_k, txt_v = txt_qkv.view(txt_qkv.shape[0], txt_qkv.shape[1], 3, blk.num_heads, -1).permute(2, 0, 3, 1, 4)
    txt_q, txt_k = blk.txt_attn.norm(txt_q, txt_k, txt_v)
    attn = _attention(torch.cat((txt_q, img_q), dim=2), torch.cat((txt_k, img_k), dim=2),
                      torch.cat((txt_v, img_v), dim=2), pe, attn_mask, capture)
    txt_attn, img_attn = attn[:, : txt.shape[1]], attn[:, txt.shape[1]:]
    img = img + apply_mod(blk.img_attn.proj(img_attn), img_mod1.gate)
    img = img + apply_mod(blk.img_mlp(apply_mod(blk.img_norm2(img), (1 + img_mod2.scale), img_mod2.shift)), img_mod2.gate)
    txt = txt + apply_mod(blk.txt_attn.proj(txt_attn), txt_mod1.gate)
    txt = txt + apply_mod(blk.txt_mlp(apply_mod(blk.txt_norm2(txt), (1 + txt_mod2.scale), txt_mod2.shift)), txt_mod2.gate)
    if txt.dtype == torch.float16:
        txt = torch.nan_to_num(txt, nan=0.0, posinf=65504, neginf=-65504)
    return img, txt


def single_forward(blk, x, vec, pe, attn_mask=None, capture=None):
    """SingleStreamBlock.forward without the in-place residual add (the modulation in `vec` where the block
    has none; Flux.2's gated SiLU MLP input is twice as wide: `mlp_hidden_dim_first`)."""
    mod = blk.modulation(vec)[0] if getattr(blk, "modulation", None) is not None else vec
    first = getattr(blk, "mlp_hidden_dim_first", blk.mlp_hidden_dim)
    qkv, mlp = torch.split(blk.linear1(apply_mod(blk.pre_norm(x), (1 + mod.scale), mod.shift)),
                           [3 * blk.hidden_size, first], dim=-1)
    q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, blk.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = blk.norm(q, k, v)
    attn = _attention(q, k, v, pe, attn_mask, capture)
    if getattr(blk, "yak_mlp", False):
        mlp = blk.mlp_act(mlp[..., first // 2:]) * mlp[..., :first // 2]
    else:
        mlp = blk.mlp_act(mlp)
    output = blk.linear2(torch.cat((attn, mlp), 2))
    x = x + apply_mod(output, mod.gate)
    if x.dtype == torch.float16:
        x = torch.nan_to_num(x, nan=0.0, posinf=65504, neginf=-65504)
    return x


class FluxFamily(Family):
    """Flux.1: maps from chosen double / single blocks; default the published best double blocks."""

    name = "flux"
    label = "Flux"  # as messages name it
    published = (PUBLISHED_BLOCKS, PUBLISHED_DEPTH)  # auto: these double blocks, at the model's relative depth
    loss_scale = LOSS_SCALE
    max_step = MAX_STEP

    def __init__(self, model):
        super().__init__(model)
        self.double, self.single = len(self.dm.double_blocks), len(self.dm.single_blocks)

    def targets(self, level: str, blocks: str) -> list[tuple]:
        if level != "auto":
            raise ValueError(f"attention_level applies to UNet models; for {self.label} choose blocks with the blocks input")
        auto = [("double_block", i) for i in scaled(*self.published, self.double)]
        self.by_maps, self.fallback = (blocks or "").strip().lower() == MAPS, auto
        return parse_blocks(blocks, self.double, self.single, auto)

    def candidates(self) -> list[tuple[str, list[tuple]]]:
        keys = [("double_block", i) for i in range(self.double)] + [("single_block", i) for i in range(self.single)]
        return [(block_label(k), [k]) for k in keys]

    def grid(self, hw) -> tuple[int, int]:
        p = self.dm.patch_size
        return (int(hw[0]) + p // 2) // p, (int(hw[1]) + p // 2) // p

    def install(self, m, run) -> None:
        existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        order = [("double_block", i) for i in range(self.double)] + [("single_block", i) for i in range(self.single)]
        last = run.targets[-1]  # "maps": the last candidate, so every block is patched until the run chooses
        for key in order[:order.index(last) + 1]:  # every block up to the last chosen one runs in the pass
            m.set_model_patch_replace(self._patch(run, key, existing.get(key)), "dit", *key)

    def _patch(self, run, key, previous):
        kind, i = key
        block = (self.dm.double_blocks if kind == "double_block" else self.dm.single_blocks)[i]

        def patch(args, extra):
            if kind == "double_block":
                run.txt_len = args["txt"].shape[1]
            if run.active and run.scoring:  # "maps": every candidate records, into its own list
                run.layer_maps = []
                rec = with_capture(run, args, run.txt_len)
                out = previous(rec, extra) if previous is not None else extra["original_block"](rec)
                run.block_maps[key] = run.layer_maps
                run.layer_maps = []
                return out
            chosen, last = key in run.targets, key == run.targets[-1]  # read per call: "maps" changes them
            if run.active and run.guiding:
                cap = grad_capture(run, run.txt_len, last, args.get("transformer_options")) if chosen else None
                if kind == "double_block":
                    img, txt = double_forward(block, args["img"], args["txt"], args["vec"], args["pe"],
                                              args.get("attn_mask"), cap)
                    out = {"img": img, "txt": txt}
                else:
                    out = {"img": single_forward(block, args["img"], args["vec"], args["pe"], args.get("attn_mask"), cap)}
                if last:
                    raise StopForward
                return out
            if run.active and chosen:
                args = with_capture(run, args, run.txt_len)
            return previous(args, extra) if previous is not None else extra["original_block"](args)

        return patch


def stock_blocks(dm, classes=(DoubleStreamBlock, SingleStreamBlock)) -> bool:
    """Whether a Flux-style model runs the block classes the gradient pass copies, text first."""
    blocks = list(dm.double_blocks) + list(dm.single_blocks)
    if not all(type(b) in classes for b in blocks):
        return False
    return not any(getattr(b, "flipped_img_txt", False) for b in dm.double_blocks)


def detect(model) -> Family | None:
    """The Flux family for a Flux.1 MODEL (stock double/single stream blocks, text first), else None."""
    dm = getattr(model.model, "diffusion_model", None)
    if type(dm) is not Flux or not stock_blocks(dm):
        return None
    # Flux.2 (ComfyUI 0.33) is built from the same class with global modulation and its own text layout:
    # not Flux.1, whose blocks the gradient pass copies and whose T5 positions the relations index
    if getattr(getattr(dm, "params", None), "global_modulation", False) or type(model.model).__name__ != "Flux":
        return None
    return FluxFamily(model)
