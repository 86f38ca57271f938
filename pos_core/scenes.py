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


# ----------------------------------------------------------------------------------- three objects
# "a cat to the left of a dog, and a cup above the dog": two relations that share their object (the
# anchor). Clauses are joined with ", and "; the second names the anchor again as "the {o}" and uses the
# two phrasings per relation that read as a clause (no "a photo of" in the middle of a sentence).
JOIN = ", and "
SECOND_CLAUSE = 2  # the first two TEMPLATES of each relation, "a {o}" -> "the {o}"
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
# (r1, r2) of the three-object scenes: 12 of the 16. "a left of b, and c right of b" needs three patches in a
# row with two gaps of PATCH + 1 (17 latent pixels of corners and patch), more than the 16 x 16 latent holds,
# so the opposite pairs on one axis are left out rather than placed with a smaller gap.
RELATION_PAIRS3 = tuple((r1, r2) for r1 in RELATIONS for r2 in RELATIONS if OPPOSITE[r1] != r2)


def prompt3(a: str, r1: str, b: str, r2: str, c: str, t1: int = 0, t2: int = 0) -> str:
    """"a {a} REL1 a {b}, and a {c} REL2 the {b}": relation 1's template t1, relation 2's clause t2."""
    second = TEMPLATES[r2][t2 % SECOND_CLAUSE].replace("a {o}", "the {o}")
    return prompt(a, r1, b, t1) + JOIN + second.format(s=c, o=b)


def triple_split(seed: int = 0) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(training, held-out) ordered object triples (a, anchor b, c), consistent with pair_split: training
    triples use training pairs only (a-b, c-b and a-c); a triple is held out if a relation's pair
    (a-b or c-b) is a held-out pair. Triples whose only held-out pair is a-c are in neither."""
    train, held = pair_split(seed)
    held_u = {frozenset(p) for p in held}
    tr, ho = [], []
    for a, b, c in itertools.permutations(list(CLASSES), 3):
        rel_pairs = (frozenset((a, b)), frozenset((c, b)))
        if any(p in held_u for p in rel_pairs):
            ho.append((a, b, c))
        elif frozenset((a, c)) not in held_u:
            tr.append((a, b, c))
    return tr, ho


def _combos3(triples: list[tuple[str, str, str]]) -> list[tuple[str, str, str, str, str, int, int]]:
    """Every (a, r1, b, r2, c, t1, t2) of the triples: 12 relation pairs x 3 x SECOND_CLAUSE phrasings."""
    return [(a, r1, b, r2, c, t1, t2) for a, b, c in triples for r1, r2 in RELATION_PAIRS3
            for t1 in range(len(TEMPLATES[r1])) for t2 in range(SECOND_CLAUSE)]


def training_prompts3(seed: int = 0, n: int = 1024) -> list[tuple[str, str, str, str, str, str]]:
    """n (prompt, a, r1, b, r2, c) training captions of three objects: a seeded sample of every
    combination on training triples (all of them would be ~11k captions to encode; n keeps it cheap)."""
    tr, _ = triple_split(seed)
    combos = _combos3(tr)
    random.Random(seed + 3).shuffle(combos)
    return [(prompt3(a, r1, b, r2, c, t1, t2), a, r1, b, r2, c) for a, r1, b, r2, c, t1, t2 in combos[:n]]


def eval_cases3(n: int, seed: int = EVAL_SEED, held_out: bool = True) -> list[tuple[str, str, str, str, str, str, int]]:
    """n (prompt, a, r1, b, r2, c, seed) three-object cases on held-out triples (or training ones), noise
    seeds 10_000 + seed + i as eval_cases (the prompts differ, so no case is shared with it)."""
    tr, ho = triple_split(0)
    combos = _combos3(ho if held_out else tr)
    rng = random.Random(seed + 3)
    rng.shuffle(combos)
    out = []
    for i in range(n):
        a, r1, b, r2, c, t1, t2 = combos[i % len(combos)]
        out.append((prompt3(a, r1, b, r2, c, t1, t2), a, r1, b, r2, c, 10_000 + seed + i))
    return out


def validation_cases3(n: int, pairs: str = "held") -> list[tuple[str, str, str, str, str, str, int]]:
    """n three-object cases for choosing a scale, disjoint from eval_cases3's reported ones: the same
    held-out triples ("held") or training triples ("seen"), noise seeds 10_000 + VALIDATION_SEED + i and
    another shuffle, as validation_cases."""
    if pairs not in ("held", "seen"):
        raise ValueError(f"pairs must be 'held' or 'seen', got {pairs!r}")
    return eval_cases3(n, seed=VALIDATION_SEED, held_out=pairs == "held")


def _gap_ok(rel: str, s: tuple[int, int], o: tuple[int, int]) -> bool:
    """Whether corners s and o (y, x) put "subject REL object" with a centroid gap of PATCH + 1 or more."""
    dy, dx = s[0] - o[0], s[1] - o[1]
    return {"left": dx <= -(PATCH + 1), "right": dx >= PATCH + 1,
            "above": dy <= -(PATCH + 1), "below": dy >= PATCH + 1}[rel]


def _apart(p: tuple[int, int], q: tuple[int, int]) -> bool:
    """Whether two patches with corners p and q do not overlap."""
    return abs(p[0] - q[0]) >= PATCH or abs(p[1] - q[1]) >= PATCH


def place3(r1: str, r2: str, gen: torch.Generator, tries: int = 100) -> tuple[tuple[int, int], ...]:
    """Corners (y, x) of a, anchor b and c so that "a R1 b" and "c R2 b" both hold with place's centroid
    gap (PATCH + 1) and no two patches overlap: a and b from place, then c uniformly among the corners
    that satisfy R2 and overlap neither (a fresh a, b if there is none)."""
    span = LATENT - PATCH
    for _ in range(tries):
        pa, pb = place(r1, gen)
        ok = [(y, x) for y in range(span + 1) for x in range(span + 1)
              if _gap_ok(r2, (y, x), pb) and _apart((y, x), pa) and _apart((y, x), pb)]
        if ok:
            return pa, pb, ok[int(torch.randint(0, len(ok), (1,), generator=gen))]
    raise RuntimeError(f"place3: no placement for {r1}/{r2} in {tries} tries")


def scene3(a: str, r1: str, b: str, r2: str, c: str, gen: torch.Generator) -> torch.Tensor:
    """One x0 latent [4, 16, 16] (model space) of three objects: "a R1 b" and "c R2 b", no overlap."""
    x = torch.zeros(4, LATENT, LATENT)
    vec = dict(zip(CLASSES, class_vectors()))
    for name, (y0, x0) in zip((a, b, c), place3(r1, r2, gen)):
        x[:, y0:y0 + PATCH, x0:x0 + PATCH] = vec[name][:, None, None]
    return x
