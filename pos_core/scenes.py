"""Synthetic two-object scenes in SD1's latent space: the effect testbed's data, prompts and exact masks.

Each class is a constant latent vector on a 5 x 5 patch of a 4 x 16 x 16 latent (128 px image); two
objects a scene are placed by left / right / above / below. The testbed's built VAE decodes each
vector to a flat colour, so objects can be segmented exactly from the latent or from the image.
Pure torch (no ComfyUI): used by the testbed trainer, its evaluation, the demo and PoS Detector Loader.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import torch

# noun -> sign pattern of its latent vector (the first three latent channels; the fourth stays 0)
CLASSES: dict[str, tuple[int, int, int]] = {
    "cat": (1, -1, -1), "dog": (-1, 1, -1), "car": (-1, -1, 1), "apple": (1, 1, -1),
    "bird": (-1, 1, 1), "cup": (1, -1, 1), "clock": (1, 1, 1), "chair": (-1, -1, -1)}
AMPLITUDE = 0.9  # latent value of an object's channels (model space, after SD1's 0.18215 scale)
LATENT = 16
PATCH = 5
SCALE_FACTOR = 0.18215  # SD1 latent format: model space = stored latent * 0.18215
RELATIONS = ("left", "right", "above", "below")
TEMPLATES = {
    "left": ("a {s} to the left of a {o}", "a {s} on the left of a {o}", "a photo of a {s} left of a {o}"),
    "right": ("a {s} to the right of a {o}", "a {s} on the right of a {o}", "a photo of a {s} right of a {o}"),
    "above": ("a {s} above a {o}", "a {s} over a {o}", "a photo of a {s} above a {o}"),
    "below": ("a {s} below a {o}", "a {s} under a {o}", "a photo of a {s} beneath a {o}"),
}
HELD_OUT_PAIRS = 6  # unordered object pairs never seen together in training (both orders)
EVAL_SEED = 1234  # eval_cases' default: the reported held-out cases use noise seeds 11_234, 11_235, ...
VALIDATION_SEED = 1_000_000  # validation_cases: noise seeds 1_010_000, 1_010_001, ... and another shuffle


def colors() -> dict[str, tuple[float, float, float]]:
    """RGB (0-1) that the built VAE decodes each class to."""
    return {k: tuple((AMPLITUDE * s + 1) / 2 for s in v) for k, v in CLASSES.items()}


def class_vectors() -> torch.Tensor:
    """[K, 4] latent vectors of the classes, in CLASSES order (model space)."""
    return torch.tensor([[*v, 0] for v in CLASSES.values()], dtype=torch.float32) * AMPLITUDE


def pair_split(seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training, held-out) ordered object pairs: HELD_OUT_PAIRS unordered pairs, both orders, held out."""
    names = list(CLASSES)
    unordered = list(itertools.combinations(names, 2))
    random.Random(seed).shuffle(unordered)
    held = {frozenset(p) for p in unordered[:HELD_OUT_PAIRS]}
    ordered = list(itertools.permutations(names, 2))
    return [p for p in ordered if frozenset(p) not in held], [p for p in ordered if frozenset(p) in held]


def prompt(s: str, rel: str, o: str, template: int = 0) -> str:
    return TEMPLATES[rel][template % len(TEMPLATES[rel])].format(s=s, o=o)


def training_prompts(seed: int = 0) -> list[tuple[str, str, str, str]]:
    """(prompt, subject, relation, object) of every training caption."""
    train, _ = pair_split(seed)
    return [(prompt(s, r, o, t), s, r, o) for s, o in train for r in RELATIONS for t in range(len(TEMPLATES[r]))]


def eval_cases(n: int, seed: int = EVAL_SEED, held_out: bool = True) -> list[tuple[str, str, str, str, int]]:
    """n (prompt, subject, relation, object, seed) cases on held-out pairs (or training pairs), fresh seeds."""
    train, held = pair_split(0)
    pairs = held if held_out else train
    rng = random.Random(seed)
    combos = [(s, r, o, t) for s, o in pairs for r in RELATIONS for t in range(3)]
    rng.shuffle(combos)
    out = []
    for i in range(n):
        s, r, o, t = combos[i % len(combos)]
        out.append((prompt(s, r, o, t), s, r, o, 10_000 + seed + i))
    return out


def validation_cases(n: int, pairs: str = "held") -> list[tuple[str, str, str, str, int]]:
    """n (prompt, subject, relation, object, seed) cases for choosing a scale, disjoint from the reported
    ones (`eval_cases(m)` with its default seed, any m < 998_766).

    pairs "held": the same held-out object pairs (never seen together in training, so the same
    distribution as the reported cases) with noise seeds 10_000 + VALIDATION_SEED + i, which no reported
    case uses (they are 10_000 + EVAL_SEED + i), and a different order of the prompts. "seen": the
    training pairs (disjoint object pairs as well, but pairs the model has learned)."""
    if pairs not in ("held", "seen"):
        raise ValueError(f"pairs must be 'held' or 'seen', got {pairs!r}")
    return eval_cases(n, seed=VALIDATION_SEED, held_out=pairs == "held")


def place(rel: str, gen: torch.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top-left corners (y, x) of subject and object patches so that "subject REL object" holds
    with a centroid gap of at least PATCH + 1 pixels on the relation's axis."""
    span = LATENT - PATCH  # corners in [0, span]

    def r(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))

    a = r(0, span - PATCH - 1)
    b = r(a + PATCH + 1, span)
    first, second = (a, b) if rel in ("left", "above") else (b, a)
    oa, ob = r(0, span), r(0, span)
    if rel in ("left", "right"):
        return (oa, first), (ob, second)
    return (first, oa), (second, ob)


def scene(s: str, rel: str, o: str, gen: torch.Generator, noise: float = 0.0) -> torch.Tensor:
    """One x0 latent [4, 16, 16] (model space): subject and object patches on a zero background."""
    if noise > 0 and float(torch.rand((), generator=gen)) < noise:
        rel = RELATIONS[int(torch.randint(0, 4, (1,), generator=gen))]
    x = torch.zeros(4, LATENT, LATENT)
    vec = dict(zip(CLASSES, class_vectors()))
    (ys, xs), (yo, xo) = place(rel, gen)
    x[:, yo:yo + PATCH, xo:xo + PATCH] = vec[o][:, None, None]
    x[:, ys:ys + PATCH, xs:xs + PATCH] = vec[s][:, None, None]
    return x


def segment(latent_model_space: torch.Tensor, min_cos: float = 0.85, min_norm: float = 0.5) -> torch.Tensor:
    """Class index per latent pixel ([..., 4, H, W] -> [..., H, W], -1 = background), exactly from the
    known patterns: nearest class by cosine, if close in direction and at least half as strong."""
    v = class_vectors()
    x = latent_model_space.float().movedim(-3, -1)  # [..., H, W, 4]
    norm = x.norm(dim=-1)
    cos = (x @ v.T) / (norm[..., None] * v.norm(dim=-1) + 1e-8)
    best, idx = cos.max(dim=-1)
    ok = (best >= min_cos) & (norm >= min_norm * float(v.norm(dim=-1)[0]))
    return torch.where(ok, idx, torch.full_like(idx, -1))


def masks_of(latent_stored: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """name -> H x W bool mask of one sampler LATENT ([4, H, W] as KSampler returns it)."""
    seg = segment(latent_stored * SCALE_FACTOR)
    order = list(CLASSES)
    return {n: seg == order.index(n) for n in names}
