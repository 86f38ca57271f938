"""Candidate seeds of PoS Seed Search.

Candidate 0 is the seed itself; candidate i >= 1 is splitmix64 of (seed + i * golden gamma), cut to
48 bits. Nearby seeds therefore share no candidate: candidate i of seed s and candidate j of seed s'
feed the mixer the same number only if s - s' = (j - i) * gamma (mod 2**64), which for i, j < 256 (the
node's limit) needs |s - s'| >= 2**54 or i = j and s = s'; the mixer is a bijection of 64-bit numbers,
so only the cut to 48 bits can make two derived seeds (or a derived seed and another run's first seed)
equal, with a chance of about 1 in 2**48 per pair. The derived seeds are plain ComfyUI seeds below 2**48
(exact as a number in the browser, like the bench runner's seeds), so a KSampler given one makes that
candidate's noise again. Raising `candidates` keeps the earlier ones: candidate_seeds(s, 4) is
candidate_seeds(s, 8)[:4].
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # splitmix64's increment (2**64 / golden ratio, odd)
DERIVED_BITS = 48
SCHEME = "splitmix64-48/v1"  # names this derivation (e.g. in cache keys of runs that used it)


def splitmix64(state: int) -> int:
    """The output of splitmix64 (Steele, Lea and Flood 2014) whose state before the step is `state`:
    splitmix64(0) is the first number of the generator seeded with 0."""
    z = (state + GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def candidate_seed(seed: int, i: int) -> int:
    """Seed of candidate i of a search started at `seed` (0 <= seed < 2**64)."""
    if not 0 <= seed <= MASK64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    if i < 0:
        raise ValueError(f"candidate index must be >= 0, got {i}")
    if i == 0:
        return seed
    return splitmix64((seed + i * GAMMA) & MASK64) >> (64 - DERIVED_BITS)


def candidate_seeds(seed: int, n: int) -> list[int]:
    """The n candidate seeds of a search started at `seed`: seed itself, then n - 1 derived ones."""
    return [candidate_seed(seed, i) for i in range(n)]
