"""Qwen-Image (Qwen2.5-VL text encoder): joint attention of its 60 dual-stream MM-DiT blocks.

Every block runs one joint attention over text, then the image (ComfyUI drops the chat template's system
prompt from the text before the model sees it). The stock blocks update nothing in place, so the gradient
pass runs them as they are, with the attention computed by PyTorch SDPA (which has a backward whatever
backend ComfyUI runs) and captured, up to the last chosen block. The latent is 5-D ([B, 16, 1, H, W]).
"""

from __future__ import annotations

from .base import Family
from .dit import grad_capture, grad_override, stack_candidates, stack_targets, with_capture, with_override

# No per-block map study exists for Qwen-Image. "Unraveling MMDiT Blocks" (arXiv 2601.02211) finds spatial layout
# set in its earlier blocks and detail in later ones; the published picks of Flux.1 and SD3.5 sit in the middle
# of their stacks. The default: five blocks from a third to three fifths of the depth (blocks = maps chooses
# from the model's own maps instead).
PUBLISHED_BLOCKS, PUBLISHED_DEPTH = [20, 24, 28, 32, 36], 60


class QwenImageFamily(Family):
    """Qwen-Image: maps from chosen dual-stream blocks; default a band in the first half of the stack."""

    name = "qwen_image"
    label = "Qwen-Image"
    loss_scale = 1000.0  # as Flux / SD3: deep transformer stacks give small attention gradients
    max_step = 0.3  # as Flux / SD3: each guided move at most 0.3 x sigma (RMS)

    def __init__(self, model):
        super().__init__(model)
        self.depth = len(self.dm.transformer_blocks)

    def targets(self, level: str, blocks: str) -> list[tuple]:
        return stack_targets(self, level, blocks, PUBLISHED_BLOCKS, PUBLISHED_DEPTH, self.depth)

    def candidates(self) -> list[tuple[str, list[tuple]]]:
        return stack_candidates(self.depth)

    def grid(self, hw) -> tuple[int, int]:
        p = self.dm.patch_size
        return (int(hw[0]) + p // 2) // p, (int(hw[1]) + p // 2) // p

    def install(self, m, run) -> None:
        existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        last = run.targets[-1][1]  # "maps": the last candidate, so every block is patched until the run chooses
        for i in range(last + 1):
            key = ("double_block", i)
            m.set_model_patch_replace(self._patch(run, key, existing.get(key)), "dit", *key)

    def _patch(self, run, key, previous):
        def stock(args, extra):
            return previous(args, extra) if previous is not None else extra["original_block"](args)

        def patch(args, extra):
            txt_len = args["txt"].shape[1]
            if run.active and run.scoring:  # "maps": every candidate records, into its own list
                run.layer_maps = []
                out = stock(with_capture(run, args, txt_len), extra)
                run.block_maps[key] = run.layer_maps
                run.layer_maps = []
                return out
            chosen, last = key in run.targets, key == run.targets[-1]  # read per call: "maps" changes them
            if run.active and run.guiding:  # raises StopForward after the last chosen block's maps
                cap = grad_capture(run, txt_len, last, args.get("transformer_options")) if chosen else None
                return stock(with_override(args, grad_override(cap)), extra)
            if run.active and chosen:
                args = with_capture(run, args, txt_len)
            return stock(args, extra)

        return patch


def detect(model) -> Family | None:
    """The Qwen-Image family for a Qwen-Image MODEL, else None."""
    try:
        from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel
    except ImportError:
        return None
    dm = getattr(model.model, "diffusion_model", None)
    if type(dm) is not QwenImageTransformer2DModel:
        return None
    return QwenImageFamily(model)
