"""UNet family (SD1.x, SD2.x, SDXL): cross-attention (attn2) layers of one UNet level."""

from __future__ import annotations

import math

from comfy.ldm.modules.attention import SpatialTransformer, optimized_attention
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, UNetModel, Upsample

from ...pos_core import attention, guidance
from .. import conds
from .base import Family, StopForward

LEVELS = ("auto", "latent/1", "latent/2", "latent/4", "latent/8", "maps")  # maps: chosen per run from the maps


def attention_layers(unet: UNetModel) -> list[tuple[str, int, int, int]]:
    """(block, number, transformer index, level) of every cross-attention layer, level 0 = latent."""
    out = []
    level = 0
    for i, blk in enumerate(unet.input_blocks):
        for m in blk:
            if isinstance(m, SpatialTransformer):
                out += [("input", i, t, level) for t, b in enumerate(m.transformer_blocks) if b.attn2 is not None]
            if isinstance(m, Downsample):
                level += 1
    for m in unet.middle_block:
        if isinstance(m, SpatialTransformer):
            out += [("middle", 0, t, level) for t, b in enumerate(m.transformer_blocks) if b.attn2 is not None]
    for i, blk in enumerate(unet.output_blocks):
        for m in blk:
            if isinstance(m, SpatialTransformer):
                out += [("output", i, t, level) for t, b in enumerate(m.transformer_blocks) if b.attn2 is not None]
        if any(isinstance(m, Upsample) for m in blk):
            level -= 1
    return out


def target_layers(unet: UNetModel, level: str) -> list[tuple[str, int, int]]:
    """Layers of the chosen level; "auto" is the authors' choice: the coarsest level of the
    encoder that has cross-attention (16 x 16 for SD1 at 512 px, 32 x 32 for SDXL at 1024 px)."""
    layers = attention_layers(unet)
    have = sorted({lv for b, _, _, lv in layers if b == "input"})
    if not have:
        raise ValueError("this UNet has no cross-attention layers to guide")
    if level == "maps":  # every level with cross-attention is a candidate until the run chooses
        return [(b, n, t) for b, n, t, _ in layers]
    if level == "auto":
        lv = have[-1]
    elif level in LEVELS:
        lv = int(math.log2(int(level.split("/")[1])))
    else:
        raise ValueError(f"attention_level must be one of {', '.join(LEVELS)}, got {level!r}")
    chosen = [(b, n, t) for b, n, t, l in layers if l == lv]
    if not chosen:
        names = ", ".join(f"latent/{2 ** x}" for x in sorted({l for *_, l in layers}))
        raise ValueError(f"attention_level {level} has no cross-attention in this model; it has: {names}")
    return chosen


def make_attn2(run, previous, key):
    """attn2 replace for one captured layer; `previous` is the replace it wraps, if any. Whether the layer
    is chosen (and the last chosen) is read per call: "maps" narrows the run's targets on its first step."""

    def attn2(q, k, v, extra_options):
        if run.active and (run.scoring or key in run.targets):
            h, w = extra_options["activations_shape"][-2:]
            pieces = run.block_maps.setdefault(key, []) if run.scoring else run.layer_maps
            for rows, reg in conds.chunks(run.selection, extra_options, q.shape[0]):
                maps = attention.token_maps(q[rows], k[rows], extra_options["n_heads"], run.groups, h, w)
                pieces.append((maps, reg[0] if reg else None))
            if run.guiding and key == run.targets[-1]:
                raise StopForward
        if previous is not None:
            return previous(q, k, v, extra_options)
        return optimized_attention(q, k, v, extra_options["n_heads"])

    return attn2


class UNetFamily(Family):
    """SD1.x / SD2.x / SDXL: maps from the attn2 layers of one level, averaged (the authors' setup)."""

    def __init__(self, model, name: str):
        super().__init__(model)
        self.name = name
        self.label = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}.get(name, name)
        self.loss_scale = guidance.LOSS_SCALE[name]

    maps_most = 1  # one level: its grid is the run's

    def targets(self, level: str, blocks: str) -> list[tuple]:
        chosen = target_layers(self.dm, level)
        self.levels = {(b, n, t): lv for b, n, t, lv in attention_layers(self.dm)}
        self.by_maps = level == "maps"
        self.fallback = target_layers(self.dm, "auto")
        self.level = self.levels[(self.fallback if self.by_maps else chosen)[0]]
        return chosen

    def candidates(self) -> list[tuple[str, list[tuple]]]:
        by_level: dict[int, list[tuple]] = {}
        for key, lv in self.levels.items():
            by_level.setdefault(lv, []).append(key)
        return [(f"latent/{2 ** lv}", keys) for lv, keys in sorted(by_level.items())]

    def candidate_grid(self, keys: list[tuple], hw) -> tuple[int, int]:
        h, w = int(hw[0]), int(hw[1])
        for _ in range(self.levels[keys[0]]):
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w

    def chose(self, keys: list[tuple]) -> None:
        self.level = self.levels[keys[0]]

    def grid(self, hw) -> tuple[int, int]:
        """The level's grid for a latent of size hw (each downsample halves, rounding up); maps of
        the level's layers are brought to it whatever resized them (Deep Shrink, area crops)."""
        h, w = int(hw[0]), int(hw[1])
        for _ in range(getattr(self, "level", 0)):
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w

    def install(self, m, run) -> None:
        to = m.model_options.setdefault("transformer_options", {})
        existing = to.get("patches_replace", {}).get("attn2", {})
        for key in run.targets:
            previous = existing.get(key, existing.get(key[:2]))
            m.set_model_attn2_replace(make_attn2(run, previous, key), *key)


def detect(model) -> Family | None:
    """The UNet family of a MODEL with cross-attention, else None."""
    inner = model.model
    unet = getattr(inner, "diffusion_model", None)
    if not isinstance(unet, UNetModel) or not attention_layers(unet):
        return None
    context = (getattr(getattr(inner, "model_config", None), "unet_config", None) or {}).get("context_dim")
    return UNetFamily(model, {2048: "sdxl", 1280: "sdxl", 1024: "sd2"}.get(context, "sd1"))
