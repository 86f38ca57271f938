"""Host test of the measured effect: a reduced testbed is trained, then PoS Guidance must make the
relation right more often than the unguided model on held-out (prompt, seed) cases.

This guards the effect itself, not only the plumbing: a change that breaks token binding, the sign of
the step, the level or the schedule leaves the images valid but the relations no better, and fails here.
Training is seeded and cached in the test cache (outside the repository), so reruns only evaluate.
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
# the reduced testbed (the demo's built-in model): 1200 steps, 8-16 min on 2 CPU cores, once per test cache.
# Measured on it (README): unguided 22.5 % relation / 75 % objects, psg@20 62.5 % on 40 held-out cases
STEPS = int(os.environ.get("POS_EFFECT_TEST_STEPS", "1200"))
CASES = 40
MIN_GAIN = 0.15  # accuracy points guidance must add (issue 10's target; +40 measured, so a real margin)

pytestmark = pytest.mark.skipif(os.environ.get("POS_SKIP_SLOW") == "1",
                                reason="POS_SKIP_SLOW=1: the effect test trains a reduced testbed (8-16 min once)")


@pytest.fixture(scope="module")
def reduced(comfyui_path):
    env = dict(os.environ, POS_TESTBED_CACHE=str(CACHE), COMFYUI_PATH=str(comfyui_path))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "effect.py"), "train", "--steps", str(STEPS)],
                       capture_output=True, text=True, env=env, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    return Path(json.loads(r.stdout.strip().splitlines()[-1])["checkpoint"])


def test_guidance_raises_relation_accuracy_on_held_out_seeds(host, reduced):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import effect
    import testbed

    bench = effect.Bench(reduced)
    cases = testbed.eval_cases(CASES, seed=777)
    acc = {}
    drawn = {}
    for way in ("unguided", "psg@20"):
        rows = [effect.score_case(testbed, bench.run(way, p, seed)[0], s, rel, o) for p, s, rel, o, seed in cases]
        acc[way] = sum(r["correct"] for r in rows) / len(rows)
        drawn[way] = sum(r["drawn"] for r in rows) / len(rows)
    assert drawn["unguided"] >= 0.5, f"the reduced testbed draws too few objects to measure anything: {drawn}"
    assert acc["psg@20"] - acc["unguided"] >= MIN_GAIN, f"relation accuracy {acc}, objects drawn {drawn}"
    assert drawn["psg@20"] >= drawn["unguided"] - 0.1, f"guidance lost objects: {drawn}"


def test_flux_testbed_trains_loads_and_runs_every_way(host, comfyui_path):
    """The Flux-family testbed's plumbing on a 4-step model: rectified-flow training through ComfyUI's Flux
    class, the in-process loader, and every evaluated way through the pack's nodes (joint-attention maps on
    the 8 x 8 patch grid; guidance changes the latent, scale 0 does not)."""
    env = dict(os.environ, POS_TESTBED_CACHE=str(CACHE), COMFYUI_PATH=str(comfyui_path))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "effect.py"), "train", "--arch", "flux",
                        "--steps", "4"], capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = Path(json.loads(r.stdout.strip().splitlines()[-1])["checkpoint"])
    assert ckpt.name.startswith("pos_testbed_flux_")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import effect
    import testbed
    import testbed_flux

    bench = effect.Bench(ckpt, testbed_flux)
    assert type(bench.model.model.diffusion_model).__name__ == "Flux"
    (prompt, s, rel, o, seed), = testbed.eval_cases(1, seed=5)
    plain, run = bench.run("unguided", prompt, seed)
    assert plain.shape == (4, testbed.LATENT, testbed.LATENT)
    assert run.maps and all(m.shape[-2:] == (8, 8) for v in run.maps.values() for m in v)
    guided, _ = bench.run("psg@80", prompt, seed)
    assert not bench.torch.equal(plain, guided), "guidance on the Flux testbed left the latent unchanged"
    again, _ = bench.run("unguided", prompt, seed)
    assert bench.torch.equal(plain, again)
    for way in ("search-attention", "search-pse"):
        latent, _ = bench.run(way, prompt, seed)
        assert bench.torch.isfinite(latent).all()
        effect.score_case(testbed, latent, s, rel, o)
