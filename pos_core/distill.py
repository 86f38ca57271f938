"""Distillation of a guided sampler into the model's weights: the teacher (the model with PoS Guidance, a
layout, or both) samples trajectories; a student (the same model plus a LoRA, sampled plainly) learns to
make the teacher's move from each recorded state. No ComfyUI import: a sampler hands in its states.

    recs = Records()
    recs.add(x_t, sigma, denoised_teacher, prompt=i)      # every step of every teacher trajectory
    x, sigma, target, prompts = recs.batch(idx)            # a training batch
    loss = distill_loss(student_denoised(x, sigma, prompts), target)

The target is the teacher's *effective* denoised prediction at the unmoved latent (after CFG and any
guidance step folded in as PoS Guidance returns it), so for a deterministic first-order sampler the
student's step from x_t equals the teacher's step. Unguided steps of a guided trajectory carry the
base model's own prediction there, which keeps the student close to the base where guidance is off.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

TEACHERS = ("psg", "layout", "layout+psg", "none")  # none: the control (the base's own trajectories)
PHRASINGS = ("a {a} to the left of a {b}", "a {a} to the right of a {b}", "a {a} above a {b}",
             "a {a} below a {b}")


def crossed_prompts(objects: Sequence[str], phrasings: Sequence[str] = PHRASINGS) -> list[str]:
    """Every ordered pair of different objects in every phrasing ({a}: subject, {b}: object).
    ValueError naming what is missing: fewer than two objects, or a phrasing without both slots."""
    names = list(dict.fromkeys(o.strip() for o in objects if o.strip()))
    if len(names) < 2:
        raise ValueError(f"objects: give at least two object names (got {len(names)}), one a line or comma-separated")
    bad = [p for p in phrasings if "{a}" not in p or "{b}" not in p]
    if bad or not phrasings:
        raise ValueError(f"phrasings: each needs {{a}} (the subject) and {{b}} (the object): {bad or 'none given'}")
    return [p.replace("{a}", a).replace("{b}", b) for p in phrasings for a, b in itertools.permutations(names, 2)]


def split_list(text: str) -> list[str]:
    """Items of a widget's text: one a line, or comma-separated on one line; blanks dropped."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if len(lines) == 1 and "," in lines[0]:
        lines = [p.strip() for p in lines[0].split(",") if p.strip()]
    return lines


@dataclass
class Records:
    """(latent, sigma, teacher's denoised prediction, prompt index) of every recorded sampling step."""

    x: list[torch.Tensor] = field(default_factory=list)
    sigma: list[float] = field(default_factory=list)
    target: list[torch.Tensor] = field(default_factory=list)
    prompt: list[int] = field(default_factory=list)

    def add(self, x: torch.Tensor, sigma: float, target: torch.Tensor, prompt: int) -> None:
        """One step's state (one image: [C, ...]); stored detached, in fp32, on the CPU."""
        if x.shape != target.shape:
            raise ValueError(f"latent {tuple(x.shape)} and target {tuple(target.shape)} differ in shape")
        self.x.append(x.detach().float().cpu())
        self.sigma.append(float(sigma))
        self.target.append(target.detach().float().cpu())
        self.prompt.append(int(prompt))

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """(x [B, ...], sigma [B], target [B, ...], prompt indices) of the records `idx`."""
        return (torch.stack([self.x[i] for i in idx]), torch.tensor([self.sigma[i] for i in idx]),
                torch.stack([self.target[i] for i in idx]), [self.prompt[i] for i in idx])


def endpoint_targets(records: Records, steps: int) -> Records:
    """The same states with each one's target replaced by its trajectory's final sample (the last step's
    denoised prediction, which an Euler step to sigma 0 returns): the measured alternative to the teacher's
    move, learning where the teacher ends from every state of its path. Records must hold whole trajectories
    of `steps` states, in order (as the node records them)."""
    if steps <= 0 or len(records) % steps:
        raise ValueError(f"{len(records)} records are not whole trajectories of {steps} steps")
    out = Records(list(records.x), list(records.sigma), list(records.target), list(records.prompt))
    for i in range(len(records)):
        out.target[i] = records.target[(i // steps) * steps + steps - 1]
    return out


def distill_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the student's and the teacher's denoised predictions (per element),
    the x0-space loss that for an Euler step equals matching the move itself up to (sigma_next - sigma)^2."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return torch.mean((pred.float() - target.float()) ** 2)


def batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Record indices of each training step: seeded shuffled epochs, so every record is seen as often."""
    if n <= 0:
        raise ValueError("no recorded steps to train on")
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    out = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(n, generator=gen).tolist()
        out.append(order[:batch_size])
        order = order[batch_size:]
    return out

