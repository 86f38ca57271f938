"""Host tests of PoS Guidance's `objective` input (issue 21): the center objective guides through the
real sampling path, and `pos` stays the default, unchanged (in-process, random-weight SD1.5 fixture)."""

from __future__ import annotations

import pytest
import torch

from comfy_host import encode, sample

SIZE, STEPS = 128, 6  # a 16 x 16 latent; 3 of 6 steps guided


def guide(host, rels, scale, **kw):
    with torch.inference_mode():
        return host.guidance.PoSGuidance.execute(host.model, rels, scale, 0.5, -1.0, True, "auto", **kw).result


def test_pos_stays_the_default_bit_identical(host):
    cond, rels = encode(host, "a cat to the left of a dog")
    default, run_d = guide(host, rels, 20.0)
    explicit, run_p = guide(host, rels, 20.0, blocks="auto", softmax="text", objective="pos")
    assert run_d.settings.objective == "pos" and host.patch.Settings().objective == "pos"
    a = sample(host, default, cond, seed=3, steps=4, size=SIZE)
    b = sample(host, explicit, cond, seed=3, steps=4, size=SIZE)
    assert torch.equal(a, b) and run_d.losses == run_p.losses and run_d.deltas.keys() == run_p.deltas.keys()
    assert all(torch.equal(run_d.deltas[k], run_p.deltas[k]) for k in run_d.deltas)
    with pytest.raises(ValueError, match="objective must be one of pos, center"):
        guide(host, rels, 20.0, objective="centre")


def test_center_objective_guides_and_lowers_its_loss(host):
    from pos_spatial_pack.pos_core.attention import maps_loss

    prompts = ["a cat to the left of a dog", "a bird above a table", "a cup below a lamp",
               "a vase to the right of a clock"]
    wins, report = 0, []
    for seed, prompt in enumerate(prompts):
        cond, rels = encode(host, prompt)
        plain_model, plain = guide(host, rels, 0.0, objective="center")  # scale 0: records only
        ref = sample(host, plain_model, cond, seed=seed, steps=STEPS, size=SIZE)
        model, run = guide(host, rels, 2000.0, objective="center")
        out = sample(host, model, cond, seed=seed, steps=STEPS, size=SIZE)
        assert not torch.equal(out, ref), "the center objective left the latent unchanged"
        assert sorted(run.deltas) == [0, 1, 2] and torch.isfinite(out).all()
        # what it reports is the center loss of the maps it guided (step 0: the same latent as unguided)
        center0 = float(maps_loss(plain.maps[0], plain.pairs, objective="center")[0])
        assert run.losses[0][0] == pytest.approx(center0, rel=1e-3, abs=1e-6)
        end = 3  # first step after the guided window
        a = float(maps_loss(plain.maps[end], plain.pairs, objective="center")[0])
        b = float(maps_loss(run.maps[end], run.pairs, objective="center")[0])
        report.append((prompt, a, b))
        wins += b < a
    assert wins >= 3, report
