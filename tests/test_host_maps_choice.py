"""blocks / attention_level "maps" in the real ComfyUI, on the tiny random Flux.1 and SD3 models and the
random SD1.5 fixture: on the first step of a run one extra pass records every candidate block's (level's)
maps, the sharpest are kept as the run's targets, the choice is recorded, told, deterministic, and guided
sampling with it works and moves the latent. Random weights prove the plumbing, not which block is best
(that is measured on the Flux testbed: docs/measured_effect.md)."""

from __future__ import annotations

import json

import pytest
import torch

SIZE = 128


@pytest.fixture(scope="module")
def dit(host):
    import dit_fixtures

    with torch.inference_mode():
        models = {"flux": dit_fixtures.flux(), "sd3": dit_fixtures.sd3()}
    return models, {"flux": dit_fixtures.conds("flux"), "sd3": dit_fixtures.conds("sd3")}


CFG = {"flux": 1.0, "sd3": 4.5}
LABELS = {"flux": ["0", "1", "s0", "s1"], "sd3": ["0", "1"]}


def relations():
    from pos_spatial_pack.pos_core.tokens import RelationSet, TokenRelation

    return RelationSet("a cat to the left of a dog", (TokenRelation("cat", "left", "dog", (2,), (8,)),))


def sample(host, model, cond, cfg, seed=0, steps=4, size=SIZE, scheduler="simple"):
    pos, neg = cond
    with torch.inference_mode():
        latent = host.nodes.EmptyLatentImage().generate(size, size, 1)[0]
        return host.nodes.common_ksampler(model, seed, steps, cfg, "euler", scheduler, pos, neg, latent)[0]["samples"]


def guided(host, model, blocks="maps", level="auto", scale=20.0, rels=None):
    with torch.inference_mode():
        return host.guidance.PoSGuidance.execute(model, rels or relations(), scale, 0.5, -1.0, True, level,
                                                 blocks, "text").result


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_maps_chooses_blocks_once_per_run_deterministically_and_guides(host, dit, kind, caplog):
    models, conds = dit
    model, run = guided(host, models[kind])
    assert run.by_maps and len(run.targets) == len(LABELS[kind])  # every block a candidate until the run
    plain = sample(host, models[kind], conds[kind], CFG[kind])
    with caplog.at_level("INFO", logger="pos_spatial"):
        out = sample(host, model, conds[kind], CFG[kind])
    choice = run.choice
    assert choice is not None and choice["step"] == 0 and choice["seconds"] > 0
    assert sorted(choice["scores"]) == sorted(LABELS[kind])  # every block was recorded and scored
    assert 1 <= len(choice["kept"]) <= 5 and set(choice["kept"]) <= set(LABELS[kind])
    best = max(choice["scores"].values(), key=lambda v: v["score"])["score"]
    for label in choice["kept"]:
        assert choice["scores"][label]["score"] >= 0.9 * best
    assert len(run.targets) == len(choice["kept"])  # the run guided only the kept blocks
    assert choice["note"] in run.notes and "blocks=maps kept" in choice["note"]
    assert any("blocks=maps kept" in r.getMessage() for r in caplog.records)
    assert sorted(run.losses) == [0, 1]  # 2 of 4 steps guided, on the kept blocks' maps
    assert float((out - plain).abs().max()) > 1e-4, "guidance with blocks=maps did not move the latent"
    # decided again per run, and the same again: deterministic
    first = (dict(choice), list(run.targets))
    again = sample(host, model, conds[kind], CFG[kind])
    assert run.choice is not choice and run.choice["kept"] == first[0]["kept"] and run.targets == first[1]
    assert {k: v["score"] for k, v in run.choice["scores"].items()} == {k: v["score"] for k, v in first[0]["scores"].items()}
    assert torch.equal(again, out)
    # a fixed choice of the kept blocks guides as maps did (the extra pass itself changes nothing)
    fixed, _ = guided(host, models[kind], blocks=",".join(first[0]["kept"]))
    assert torch.allclose(sample(host, fixed, conds[kind], CFG[kind]), out, atol=1e-5)


def test_maps_records_only_the_kept_blocks_afterwards(host, dit):
    models, conds = dit
    model, run = guided(host, models["flux"], scale=0.0)  # recording only (PoS Attention Capture's use)
    out = sample(host, model, conds["flux"], 1.0)
    assert torch.equal(out, sample(host, models["flux"], conds["flux"], 1.0))  # scale 0 changes nothing
    assert run.choice is not None and sorted(run.maps) == [0, 1, 2, 3]
    assert all(m.shape[-2:] == (8, 8) for m in run.maps.values())


def test_seed_search_maps_ranks_every_batch_by_one_choice(host, dit):
    from pos_spatial_pack.nodes.seed_search import PoSSeedSearch

    models, conds = dit
    pos, neg = conds["flux"]
    with torch.inference_mode():
        latent = host.nodes.EmptyLatentImage().generate(SIZE, SIZE, 1)[0]
        res = PoSSeedSearch.execute(models["flux"], pos, neg, latent, relations(), 3, 4, "attention", 4, 2, 1.0,
                                    "euler", "simple", 2, blocks="maps").result
        again = PoSSeedSearch.execute(models["flux"], pos, neg, latent, relations(), 3, 4, "attention", 4, 2, 1.0,
                                      "euler", "simple", 2, blocks="maps").result
    table = json.loads(res[2])
    assert set(table["blocks"].split(",")) <= set(LABELS["flux"])
    assert res[1] == again[1] and json.loads(again[2]) == table  # deterministic
    assert len(table["candidates"]) == 4


def test_maps_on_a_unet_chooses_a_level(host):
    """The random SD1.5 fixture has cross-attention on two levels (latent/1 and latent/2): one is kept."""
    cond, rels, _ = host.relations.PoSRelationsFromPrompt.execute("a cat to the left of a dog", host.clip).result
    model, run = guided(host, host.model, blocks="auto", level="maps", rels=rels)
    plain = sample(host, host.model, (cond, host.neg), 5.0, size=64, scheduler="normal")
    out = sample(host, model, (cond, host.neg), 5.0, size=64, scheduler="normal")
    choice = run.choice
    assert choice is not None and sorted(choice["scores"]) == ["latent/1", "latent/2"]
    assert len(choice["kept"]) == 1 and "attention_level=maps kept" in choice["note"]
    level = int(choice["kept"][0].split("/")[1]).bit_length() - 1
    assert run.family.level == level and all(run.family.levels[k] == level for k in run.targets)
    assert run.grid == (64 // 8 // 2 ** level,) * 2 and all(m.shape[-2:] == run.grid for m in run.maps.values())
    assert sorted(run.losses) == [0, 1] and float((out - plain).abs().max()) > 1e-4
    fixed, _ = guided(host, host.model, blocks="auto", level=choice["kept"][0], rels=rels)
    assert torch.allclose(sample(host, fixed, (cond, host.neg), 5.0, size=64, scheduler="normal"), out, atol=1e-5)


def test_maps_bad_inputs_name_the_input(host, dit):
    models, _ = dit
    with pytest.raises(ValueError, match="attention_level applies to UNet models"):
        guided(host, models["flux"], level="maps")
    with pytest.raises(ValueError, match="blocks: 'mapz' is not a block"):
        guided(host, models["sd3"], blocks="mapz")


def test_maps_falls_back_to_auto_with_a_note_when_nothing_was_recorded(host, dit):
    models, conds = dit
    model, run = guided(host, models["flux"])
    run.family.candidates = lambda: [("x", [("double_block", 99)])]  # a candidate that never records
    out = sample(host, model, conds["flux"], 1.0)
    assert run.choice["kept"] == [] and run.targets == run.family.fallback == [("double_block", 1)]
    assert any("no candidate's maps were recorded" in n for n in run.notes)
    assert sorted(run.losses) == [0, 1] and torch.isfinite(out).all()  # guided on the auto blocks
