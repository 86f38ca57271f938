"""What every model family shares: the interface the PSG engine uses, and the helpers of its patches."""

from __future__ import annotations

import contextlib

import torch


class StopForward(Exception):
    """Raised after the last captured layer or block of the gradient pass: later ones are not needed."""


def _alias(p: torch.Tensor) -> torch.Tensor:
    """A normal tensor sharing an inference tensor's storage (autograd can save it); a copy only where
    neither DLPack nor a byte view can alias the dtype."""
    try:
        return torch.from_dlpack(p)
    except (RuntimeError, TypeError, BufferError):
        pass
    try:
        return torch.from_dlpack(p.view(torch.uint8)).view(p.dtype)
    except (RuntimeError, TypeError, BufferError):
        return p.detach().clone()


class WeightAliases:
    """Zero-copy autograd-usable views of a model's inference-mode weights, swapped in for one pass."""

    def __init__(self, module: torch.nn.Module):
        self.items = []
        with torch.inference_mode(False):
            for m in module.modules():
                for name, p in m._parameters.items():
                    if p is not None and p.is_inference():
                        self.items.append((m, name, p, _alias(p)))

    def __enter__(self):
        for m, name, _, alias in self.items:
            m._parameters[name] = alias

    def __exit__(self, *exc):
        for m, name, p, _ in self.items:
            m._parameters[name] = p


@contextlib.contextmanager
def differentiable():
    """ComfyUI 0.33+ runs some model code through fused kernels that have no backward (comfy_kitchen's rope
    on Flux) unless `comfy.model_management.in_training` is set, as its own LoRA trainer sets it: set it for
    a pass that takes gradients. A ComfyUI without the flag (0.3.x) has only differentiable code: nothing."""
    import comfy.model_management as mm

    if not hasattr(mm, "in_training"):
        yield
        return
    before, mm.in_training = mm.in_training, True
    try:
        yield
    finally:
        mm.in_training = before


class Family:
    """One kind of diffusion model PSG guides: where its image-text attention is (`targets`), the
    patches that record it on every step and compute it with gradients in the guidance pass
    (`install`), and what that pass needs around it (`grad_pass`). Chosen once from the MODEL."""

    name = ""
    label = ""  # the family as messages name it
    loss_scale = 1.0  # default multiplier of the PoS loss (loss_scale = -1 on the node)
    max_step = 0.0  # default step cap (max_step = -1 on the node); 0 = the paper's step, uncapped
    maps_most = 5  # "maps": at most this many candidates kept (pos_core.attention.pick_best)

    def __init__(self, model):
        self.model = model
        self.dm = model.model.diffusion_model
        self.by_maps = False  # targets chosen per run from the model's own maps (blocks / level "maps")
        self.fallback: list[tuple] = []  # "maps": the auto targets, if no maps could be scored

    def targets(self, level: str, blocks: str) -> list[tuple]:
        """The layers or blocks whose maps are averaged; ValueError naming the input for a bad choice.
        With "maps" (by_maps): every candidate's keys, in execution order; the run keeps some later."""
        raise NotImplementedError

    def candidates(self) -> list[tuple[str, list[tuple]]]:
        """"maps": the candidates in execution order, each (label as the input writes it, its keys)."""
        raise NotImplementedError

    def candidate_grid(self, keys: list[tuple], hw) -> tuple[int, int] | None:
        """The grid a candidate's maps are combined on (UNet: its level's)."""
        return self.grid(hw)

    def chose(self, keys: list[tuple]) -> None:
        """Called with the kept keys after a "maps" choice (the UNet family moves to that level)."""

    def grid(self, hw) -> tuple[int, int] | None:
        """Image-token grid (rows, columns) of a latent of spatial size hw; None where layers know it."""
        return None

    def install(self, m, run) -> None:
        """Put the capture patches for `run.targets` on the clone `m` (wrapping what is already there)."""
        raise NotImplementedError

    def grad_pass(self, run) -> contextlib.AbstractContextManager:
        """Context of the gradient pass: the model's weights as zero-copy autograd-usable aliases."""
        if run._aliases is None:
            run._aliases = WeightAliases(self.dm)
        return run._aliases
