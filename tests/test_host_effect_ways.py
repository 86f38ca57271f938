"""Host test of the effect benchmark's issue-21 ways (center@S, layout, layout+psg, psg+search) and of
`tune`'s scale choice: each runs once end to end through the pack's nodes and the stock conditioning
nodes, on a reduced case set. Plumbing, not the effect (the n >= 200 table is measured by the lead).

The model: test_host_effect.py's reduced testbed if it is already in the test cache (never retrained
here), else a 4-step testbed trained once into the same cache (a minute or two: mostly encoding the
training captions), which POS_SKIP_SLOW=1 skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("POS_TEST_CACHE", Path.home() / ".cache" / "pos_spatial_tests")) / "testbed"
REDUCED_STEPS = int(os.environ.get("POS_EFFECT_TEST_STEPS", "1200"))  # test_host_effect.py's model
TINY_STEPS = 4


@pytest.fixture(scope="module")
def testbed_ckpt(host, comfyui_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import testbed

    for steps in (REDUCED_STEPS, TINY_STEPS):
        path = testbed.checkpoint_path(testbed.Config(steps=steps), CACHE)
        if path.exists():
            return path
    if os.environ.get("POS_SKIP_SLOW") == "1":
        pytest.skip("POS_SKIP_SLOW=1: no cached testbed, and this test would train a 4-step one")
    env = dict(os.environ, POS_TESTBED_CACHE=str(CACHE), COMFYUI_PATH=str(comfyui_path))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "effect.py"), "train", "--steps", str(TINY_STEPS)],
                       capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return Path(json.loads(r.stdout.strip().splitlines()[-1])["checkpoint"])


@pytest.fixture(scope="module")
def bench(testbed_ckpt):
    import effect

    return effect.Bench(testbed_ckpt)


def test_new_ways_run_end_to_end(bench):
    import effect
    import testbed

    torch = bench.torch
    (prompt, s, rel, o, seed), = testbed.eval_cases(1, seed=5)
    plain, _ = bench.run("unguided", prompt, seed)
    latents = {}
    for way in ("center@80", "layout", "layout+psg", "psg+search"):
        latent, run = bench.run(way, prompt, seed)
        assert latent.shape == (4, testbed.LATENT, testbed.LATENT) and torch.isfinite(latent).all(), way
        effect.score_case(testbed, latent, s, rel, o)
        latents[way] = (latent, run)
    center, crun = latents["center@80"]
    assert crun.settings.objective == "center" and crun.deltas and crun.settings.scale == 80.0
    assert not torch.equal(center, plain), "the center objective left the latent unchanged"
    layout, lrun = latents["layout"]
    assert lrun.settings.scale == 0.0 and not lrun.deltas  # layout alone: no gradient
    assert not torch.equal(layout, plain), "the regional conditioning changed nothing"
    both, brun = latents["layout+psg"]
    assert brun.settings.objective == "pos" and brun.deltas and not torch.equal(both, layout)
    # PoS Guidance read only the whole prompt's cond of the three (nodes/conds.py), with no note
    assert brun.selection is not None and len(brun.selection.uuids) == 1 and not brun.notes
    assert latents["psg+search"][1] is None


def test_layout_conditioning_is_stock_regional_conditioning(bench):
    import effect

    cond, rels = bench.encode("a cat to the left of a dog")
    combined = bench.layout_conditioning("a cat to the left of a dog", cond, rels)
    assert len(combined) == 3 and combined[0] is cond[0]  # the whole prompt first, untouched
    areas = [c[1].get("area") for c in combined]
    assert areas[0] is None
    m = effect.LAYOUT_MARGIN
    assert areas[1] == ("percentage", 1.0, 0.5 - m, 0.0, 0.0)  # "a cat": left half, less the margin
    assert areas[2] == ("percentage", 1.0, 0.5 - m, 0.0, 0.5 + m)  # "a dog": right half
    assert all(c[1]["strength"] == 1.0 for c in combined[1:])


def test_tune_chooses_a_scale_on_validation_cases(bench):
    import effect
    import testbed

    from pos_core.scenes import validation_cases

    cases = validation_cases(1)
    assert not {c[-1] for c in cases} & {c[-1] for c in testbed.eval_cases(1000)}
    results = effect.tune_scales(bench, "center", [0.0, 40.0], cases)
    assert set(results) == {0.0, 40.0} and all(r["n"] == 1 for r in results.values())
    assert effect.choose_scale(results) in results
    with pytest.raises(ValueError, match="takes no scale"):
        effect.tune_scales(bench, "layout", [1.0], cases)


def test_three_object_case_runs_every_way_and_layout_uses_stock_regions(bench):
    import effect
    import testbed

    from pos_core import scenes

    torch = bench.torch
    case = scenes.eval_cases3(1, seed=5)[0]
    prompt, a, r1, b, r2, c, seed = case
    cond, rels = bench.encode(prompt)
    # PoS Relations from Prompt binds both relations, each to its own mention of the shared object
    got = [(r.subject, r.relation, r.object) for r in rels.relations]
    assert got == [(a, r1, b), (c, r2, b)]
    assert rels.relations[0].object_tokens != rels.relations[1].object_tokens
    combined = bench.layout_conditioning(prompt, cond, rels)
    assert len(combined) == 4 and combined[0] is cond[0]  # the whole prompt, then one region per object
    regions = effect.layout_regions_many(got)
    for entry, name in zip(combined[1:], regions):
        x, y, w, h = regions[name]
        assert entry[1]["area"] == ("percentage", h, w, y, x) and entry[1]["strength"] == 1.0
    for way in ("unguided", "psg@20", "center@80", "layout", "psg+search"):
        latent, _ = bench.run(way, prompt, seed)
        assert latent.shape == (4, testbed.LATENT, testbed.LATENT) and torch.isfinite(latent).all(), way
        r = effect.score_any(testbed, latent, case)
        assert len(r["parts"]) == 2 and r["correct"] == (r["drawn"] and r["rel_correct"] == 1.0)
