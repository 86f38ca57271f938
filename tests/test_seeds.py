"""Host-free tests of PoS Seed Search's candidate seeds (pos_core.seeds)."""

from __future__ import annotations

import pytest

from pos_core.seeds import DERIVED_BITS, GAMMA, MASK64, candidate_seed, candidate_seeds, splitmix64


def test_splitmix64_matches_the_reference_generator():
    # published outputs of splitmix64: seeded with 0, and the first five seeded with 1234567
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    state, out = 1234567, []
    for _ in range(5):
        out.append(splitmix64(state))
        state = (state + GAMMA) & MASK64
    assert out == [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                   16408922859458223821]


def test_first_candidate_is_the_seed_and_the_rest_are_ksampler_seeds():
    for seed in (0, 10, 1000, 2**48, MASK64):
        c = candidate_seeds(seed, 256)
        assert c[0] == seed and len(set(c)) == 256
        assert all(0 <= s < 2**DERIVED_BITS for s in c[1:])
    assert candidate_seeds(7, 1) == [7]
    assert candidate_seeds(7, 4) == candidate_seeds(7, 8)[:4]  # more candidates keep the earlier ones
    assert candidate_seeds(7, 8) == candidate_seeds(7, 8)  # reproducible
    with pytest.raises(ValueError, match="seed must be in"):
        candidate_seed(-1, 1)
    with pytest.raises(ValueError, match="seed must be in"):
        candidate_seed(MASK64 + 1, 1)


@pytest.mark.parametrize("start", [0, 1000, 10_000 + 1234, 2**32 - 300, 2**48 - 100, MASK64 - 300])
def test_seeds_close_together_share_no_candidate(start):
    """The widget's 'increment' (s, s+1, ...), the demo's seeds 1000, 1001 and the effect benchmark's
    consecutive case seeds: no candidate seed appears in two searches."""
    seen: dict[int, int] = {}
    for seed in range(start, min(start + 300, MASK64 + 1)):
        for s in candidate_seeds(seed, 16):
            assert seen.setdefault(s, seed) == seed, f"seeds {seen[s]} and {seed} share candidate {s}"


def test_adjacent_seeds_with_the_most_candidates_share_none():
    for seed in (0, 1000, 123456789):
        assert not set(candidate_seeds(seed, 256)) & set(candidate_seeds(seed + 1, 256))
