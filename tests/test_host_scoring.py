"""Host tests of PoS Score, the loaders and PoS Seed Search in the real ComfyUI (in-process)."""

from __future__ import annotations

import json

import pytest
import torch

from comfy_host import encode, guide, sample


@pytest.fixture(scope="module")
def mods(host):
    from pos_spatial_pack.nodes import scoring, seed_search

    return scoring, seed_search


def scene_images():
    """Two 64 x 96 images with known masks: cat left of dog (correct), then swapped."""
    imgs = torch.full((2, 64, 96, 3), 0.5)
    cat = torch.zeros(2, 64, 96)
    dog = torch.zeros(2, 64, 96)
    cat[0, 10:40, 5:30], dog[0, 20:50, 60:90] = 1, 1
    cat[1, 10:40, 60:90], dog[1, 20:50, 5:30] = 1, 1
    return imgs, cat, dog


def test_score_with_mask_inputs(host, mods):
    scoring, _ = mods
    _, rels = encode(host, "a cat to the left of a dog")
    imgs, cat, dog = scene_images()
    out = scoring.PoSScore.execute(imgs, rels, None, None, cat, dog, -1.0)
    per, mean, report, overlay = out.result
    assert per == [1.0, 0.0] and mean == 0.5
    rep = json.loads(report)
    r0 = rep["images"][0]["relations"][0]
    assert r0["visor"] and r0["geneval"] and r0["t2i_compbench"] == 1.0
    assert rep["aggregate"]["accuracy"] == 0.5 and rep["aggregate"]["visor"]["VISOR_cond"] == 50.0
    assert overlay.shape == (2, 64 + 56 + 18, 96 + 56, 3)


def test_score_errors_name_the_inputs(host, mods):
    scoring, _ = mods
    _, rels = encode(host, "a cat to the left of a dog")
    imgs, cat, dog = scene_images()
    with pytest.raises(ValueError, match="connect a PoS Detector Loader to detector"):
        scoring.PoSScore.execute(imgs, rels, None, None, None, None, -1.0)
    with pytest.raises(ValueError, match="both subject_masks and object_masks"):
        scoring.PoSScore.execute(imgs, rels, None, None, cat, None, -1.0)
    with pytest.raises(ValueError, match="subject_masks is .* resize the mask"):
        scoring.PoSScore.execute(imgs, rels, None, None, cat[:, :32], dog, -1.0)
    _, front = encode(host, "a vase in front of a clock")
    with pytest.raises(ValueError, match="connect PoS Depth Loader to depth_model"):
        scoring.PoSScore.execute(imgs, front, None, None, cat, dog, -1.0)


def test_loaders_and_detector_scoring(host, mods, tiny_models, tmp_path):
    import folder_paths

    scoring, _ = mods
    (tmp_path / "tiny-owl").symlink_to(tiny_models["owlv2"], target_is_directory=True)
    (tmp_path / "tiny-depth").symlink_to(tiny_models["depth"], target_is_directory=True)
    folder_paths.add_model_folder_path(scoring.FOLDER, str(tmp_path))
    assert {"tiny-owl", "tiny-depth"} <= set(scoring.local_models())
    det = scoring.PoSDetectorLoader.execute("tiny-owl", "none").result[0]
    depth = scoring.PoSDepthLoader.execute("tiny-depth").result[0]
    _, rels = encode(host, "a cat to the left of a dog and a vase in front of a clock")
    imgs = torch.rand(2, 64, 64, 3)
    per, mean, report, overlay = scoring.PoSScore.execute(imgs, rels, det, depth, None, None, 0.0).result
    assert len(per) == 2 and all(0.0 <= p <= 1.0 for p in per)
    assert [r["relation"] for r in json.loads(report)["images"][0]["relations"]] == ["left", "front"]
    with pytest.raises(ValueError, match="could not load the model 'nowhere/none'.*pos_models"):
        scoring.PoSDetectorLoader.execute("nowhere/none", "none")
    with pytest.raises(ValueError, match="could not load the model 'nowhere/depth'.*pos_models"):
        scoring.PoSDepthLoader.execute("nowhere/depth")
    with pytest.raises(ValueError, match="not a depth estimator"):
        scoring.PoSDepthLoader.execute("tiny-owl")


# "The same latent": PoS Seed Search's LATENT and a KSampler run of best_seed with the same settings agree up
# to float rounding, not bit for bit. The search samples candidates in batches (and, with a deterministic
# sampler, finishes the best one from its batched step-k latent), and a batch of 2 rounds differently from
# a batch of 1. Seen on CPU float32: 2e-6 to 6e-6 of the latent's largest |value| (2e-4 on ~100, 5.3e-4
# on ~150 with heun, 1.1e-3 on ~200 guided). Allowed: 2e-5 of it, relative, so the bound scales with the
# latent (an absolute 1e-5 failed on a loaded machine).
SAME_LATENT_REL = 2e-5


def same_latent_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| as a fraction of max |want|."""
    return float((got - want).abs().max()) / float(want.abs().max())


def assert_same_latent(got: torch.Tensor, want: torch.Tensor) -> None:
    err = same_latent_error(got, want)
    assert err <= SAME_LATENT_REL, (f"max |diff| is {err:.2e} of the latent's max |value| "
                                    f"{float(want.abs().max()):.1f}; allowed {SAME_LATENT_REL:.0e}")


def search(host, mods, rels, cond, **kw):
    _, seed_search = mods
    args = dict(model=host.model, positive=cond, negative=host.neg,
                latent_image=host.nodes.EmptyLatentImage().generate(256, 256, 1)[0], relations=rels, seed=10,
                candidates=4, mode="attention", steps=6, search_steps=2, cfg=5.0, sampler_name="euler",
                scheduler="normal", batch_size=0)
    args.update(kw)
    with torch.inference_mode():
        return seed_search.PoSSeedSearch.execute(**args).result


def test_attention_search_picks_the_lowest_attention_loss(host, mods):
    from pos_spatial_pack.pos_core.attention import maps_loss
    from pos_spatial_pack.pos_core.seeds import candidate_seeds

    _, seed_search = mods
    cond, rels = encode(host, "a cat to the left of a dog")
    latent, best_seed, table, grid = search(host, mods, rels, cond, batch_size=2)
    # the same candidates one by one, scored independently
    losses = {}
    for s in candidate_seeds(10, 4):
        with torch.inference_mode():
            capture, run = host.guidance.PoSAttentionCapture.execute(host.model, rels, "auto").result
            lat = host.nodes.EmptyLatentImage().generate(256, 256, 1)[0]
            host.nodes.common_ksampler(capture, s, 6, 5.0, "euler", "normal", cond, host.neg, lat, last_step=2)
        losses[s] = float(maps_loss(seed_search.searched_maps(run, 2), run.pairs)[0])
    assert best_seed == min(losses, key=losses.get), (best_seed, losses)
    t = json.loads(table)
    assert [c["seed"] for c in t["candidates"]][0] == best_seed
    assert sorted(c["seed"] for c in t["candidates"]) == sorted(candidate_seeds(10, 4))
    for c in t["candidates"]:
        assert c["score"] == pytest.approx(losses[c["seed"]], rel=1e-3)
    # the LATENT is the best seed fully sampled: a KSampler with best_seed gives the same
    again = sample(host, host.model, cond, seed=best_seed, steps=6, cfg=5.0)
    assert_same_latent(latent["samples"], again)
    assert grid.shape[0] == 1 and grid.shape[-1] == 3
    # same inputs, same answer; automatic batch size gives the same ranking
    latent2, best2, table2, _ = search(host, mods, rels, cond)
    assert best2 == best_seed and torch.equal(latent2["samples"], latent["samples"])
    assert [c["seed"] for c in json.loads(table2)["candidates"]] == [c["seed"] for c in t["candidates"]]


def runs_from_the_first_step(model):
    """(clone of model, list) where the list counts the sampling runs that start at the first step:
    model calls at the highest timestep that do not follow one at that same timestep."""
    timesteps: list[float] = []

    def unet(apply, a):
        timesteps.append(float(a["timestep"].flatten()[0]))
        return apply(a["input"], a["timestep"], **a["c"])

    counted = model.clone()
    counted.set_model_unet_function_wrapper(unet)

    def count() -> int:
        top = max(timesteps)
        return sum(1 for i, t in enumerate(timesteps) if t == top and (i == 0 or timesteps[i - 1] != top))

    return counted, count


@pytest.mark.parametrize("sampler,resumed", [("euler", True), ("heun", True), ("euler_ancestral", False)])
def test_search_finishes_the_best_candidate_as_ksampler_would(host, mods, sampler, resumed):
    """Deterministic samplers finish the best candidate from its step-k latent (the 2 search batches are
    the only runs from step 0); stochastic ones regenerate it (a third run). Either way the LATENT is
    what a KSampler with best_seed makes."""
    cond, rels = encode(host, "a cat to the left of a dog")
    counted, runs = runs_from_the_first_step(host.model)
    latent, best, _, _ = search(host, mods, rels, cond, model=counted, sampler_name=sampler, batch_size=2)
    assert runs() == (2 if resumed else 3)
    again = sample(host, host.model, cond, seed=best, steps=6, cfg=5.0, sampler=sampler)
    # the resumed candidate's first steps ran in a batch of 2: float32 rounding only
    assert_same_latent(latent["samples"], again)


def test_search_on_a_guided_model_finishes_as_a_guided_ksampler(host, mods):
    """The guided window (first 3 of 6 steps) spans the resume step (2): the search runs the guidance on
    the full schedule, so the finished best candidate is the guided KSampler run of best_seed."""
    cond, rels = encode(host, "a cat to the left of a dog")
    guided, _ = guide(host, rels, fraction=0.5)
    latent, best, _, _ = search(host, mods, rels, cond, model=guided, batch_size=2)
    again = sample(host, guided, cond, seed=best, steps=6, cfg=5.0)
    plain = sample(host, host.model, cond, seed=best, steps=6, cfg=5.0)
    # batched search steps and backward passes differ from a single run in float32 rounding only: far
    # below what the guidance moves
    assert_same_latent(latent["samples"], again)
    assert same_latent_error(latent["samples"], again) < same_latent_error(plain, again) / 10


def test_pse_search_and_errors(host, mods, tiny_models):
    from pos_spatial_pack.pos_core import detect

    cond, rels = encode(host, "a cat to the left of a dog")
    with pytest.raises(ValueError, match="connect vae and detector"):
        search(host, mods, rels, cond, mode="pse")
    with pytest.raises(ValueError, match="search_steps \\(8\\) must not exceed steps \\(6\\)"):
        search(host, mods, rels, cond, search_steps=8)
    det = detect.load_detector(tiny_models["owlv2"])
    latent, best, table, grid = search(host, mods, rels, cond, mode="pse", candidates=3, steps=2,
                                       vae=host.vae, detector=det)
    from pos_spatial_pack.pos_core.seeds import candidate_seeds

    t = json.loads(table)
    scores = {c["seed"]: c["score"] for c in t["candidates"]}
    index = {s: i for i, s in enumerate(candidate_seeds(10, 3))}  # ties go to the earlier candidate
    assert set(scores) == set(index)
    assert best == max(scores, key=lambda s: (scores[s], -index[s])) and latent["samples"].shape == (1, 4, 32, 32)
    assert grid.shape[1] > 256
    # pse mode outputs the best candidate as its batch made it: a KSampler with best_seed makes the same
    assert_same_latent(latent["samples"], sample(host, host.model, cond, seed=best, steps=2, cfg=5.0))


def test_nearby_seeds_search_different_candidates(host, mods):
    """Runs at seeds 10 and 11 (a seed widget that increments) try disjoint candidates and end on
    different latents; each best_seed re-makes its run's latent in a plain KSampler."""
    cond, rels = encode(host, "a cat to the left of a dog")
    runs = {s: search(host, mods, rels, cond, seed=s, candidates=2, steps=2, search_steps=1) for s in (10, 11)}
    tried = {s: {c["seed"] for c in json.loads(r[2])["candidates"]} for s, r in runs.items()}
    assert len(tried[10]) == len(tried[11]) == 2 and not tried[10] & tried[11], tried
    assert same_latent_error(runs[10][0]["samples"], runs[11][0]["samples"]) > 100 * SAME_LATENT_REL
    for s, (latent, best, _, _) in runs.items():
        assert_same_latent(latent["samples"], sample(host, host.model, cond, seed=best, steps=2, cfg=5.0))


def test_attention_search_refuses_depth_only_prompts(host, mods):
    """Attention mode cannot rank front/behind/near (every score would be 0): a clear refusal."""
    cond, rels = encode(host, "a vase in front of a clock")
    with pytest.raises(ValueError, match="use mode pse .* PoS Depth Loader"):
        search(host, mods, rels, cond)
