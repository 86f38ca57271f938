"""Z-Image (Lumina-2-style single-stream NextDiT with a Qwen3 text encoder; ComfyUI 0.33+).

Two text-only and two image-only refiner layers run first, then every main layer runs one attention over
the caption (padded with learned tokens to a multiple of 32), then the image (padded likewise). ComfyUI
offers no block replace for these layers, so the maps are read by an attention override that knows a main
layer from a refiner by the joint length (caption + image, told by the noise_refiner patch of the same model
call) and the layer by ComfyUI's `block_index`. The layers update nothing in place: the gradient pass runs
them as they are, with the attention as PyTorch SDPA, and stops after the last chosen layer's maps.
"""

from __future__ import annotations

from .base import Family, StopForward
from .dit import heads_view, record, sdpa, stack_candidates, stack_targets

# No per-layer map study exists for Z-Image: the default is the middle band of the stack, where the published
# picks of the other DiTs sit (a third to three quarters of the depth); blocks = maps chooses from the model's own.
PUBLISHED_BLOCKS, PUBLISHED_DEPTH = [10, 13, 16, 19, 22], 30


class ZImageFamily(Family):
    """Z-Image: maps from chosen main layers (blocks "0".."29"); default a band in the middle of the stack."""

    name = "z_image"
    label = "Z-Image"
    loss_scale = 1000.0  # as Flux / SD3: deep transformer stacks give small attention gradients
    max_step = 0.3  # as Flux / SD3: each guided move at most 0.3 x sigma (RMS)

    def __init__(self, model):
        super().__init__(model)
        self.depth = len(self.dm.layers)

    def targets(self, level: str, blocks: str) -> list[tuple]:
        return stack_targets(self, level, blocks, PUBLISHED_BLOCKS, PUBLISHED_DEPTH, self.depth)

    def candidates(self) -> list[tuple[str, list[tuple]]]:
        return stack_candidates(self.depth)

    def grid(self, hw) -> tuple[int, int]:
        p = self.dm.patch_size
        return (int(hw[0]) + p - 1) // p, (int(hw[1]) + p - 1) // p

    def install(self, m, run) -> None:
        to = m.model_options.setdefault("transformer_options", {})
        to["optimized_attention_override"] = self._override(run, to.get("optimized_attention_override"))
        m.set_model_patch(self._lengths(run), "noise_refiner")

    @staticmethod
    def _lengths(run):
        def lengths(args):  # after each image refiner layer: the caption and image lengths of this call
            run.txt_len = args["txt"].shape[1]
            run.joint_len = run.txt_len + args["img"].shape[1]
            return {}

        return lengths

    def _override(self, run, previous):
        def override(func, *args, **kwargs):
            to = kwargs.get("transformer_options") or {}
            heads = kwargs.get("heads", args[3] if len(args) > 3 else None)
            skip = kwargs.get("skip_reshape", False)
            q, k = heads_view(args[0], heads, skip), heads_view(args[1], heads, skip)
            main = (run.active and to.get("block_type") == "double" and isinstance(to.get("block_index"), int)
                    and q.shape[2] == getattr(run, "joint_len", -1))
            key = ("double_block", to["block_index"]) if main else None
            if run.active and run.guiding:  # the gradient pass: SDPA everywhere, maps of the chosen layers
                mask = kwargs.get("mask", args[4] if len(args) > 4 else None)
                if key is not None and key in run.targets:
                    record(run, q, k, run.txt_len, to)
                    if key == run.targets[-1]:
                        raise StopForward
                return sdpa(q, k, heads_view(args[2], heads, skip), mask)
            if key is not None and (run.scoring or key in run.targets):
                if run.scoring:  # "maps": every candidate records, into its own list
                    run.layer_maps = []
                    record(run, q, k, run.txt_len, to)
                    run.block_maps[key] = run.layer_maps
                    run.layer_maps = []
                else:
                    record(run, q, k, run.txt_len, to)
            return previous(func, *args, **kwargs) if previous is not None else func(*args, **kwargs)

        return override


def detect(model) -> Family | None:
    """The Z-Image family for a Z-Image MODEL (NextDiT with caption pad tokens; not Lumina 2), else None."""
    try:
        from comfy.ldm.lumina.model import NextDiT
    except ImportError:
        return None
    dm = getattr(model.model, "diffusion_model", None)
    if type(dm) is not NextDiT or getattr(dm, "pad_tokens_multiple", None) is None:
        return None
    if getattr(dm, "clip_text_pooled_proj", None) is not None or getattr(dm, "siglip_refiner", None) is not None:
        return None
    return ZImageFamily(model)
