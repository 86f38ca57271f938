"""PoS Train LoRA in the real ComfyUI (in-process, random-weight SD1.5 fixture): ComfyUI's LoRA training with
the PoS loss of each caption's relations added. What it can show here: the loop, the two loss parts, the
LoRA format Load LoRA reads, checkpointing, bad input. Whether relations come out right is measured on the
trained testbed (benchmarks/pos_lora.py, docs/pos_lora.md), not on a random model."""

from __future__ import annotations

import json

import pytest
import torch
from comfy_host import sample

CAPTIONS = ["a cat to the left of a dog", "a cup above a clock", "a photo of a bird", "a car below a chair"]


def encode_all(host, captions):
    with torch.inference_mode():
        out = []
        for c in captions:
            out += host.nodes.CLIPTextEncode().encode(host.clip, c)[0]
        return out


def latents(n=4, seed=0):
    return {"samples": torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(seed))}


def train(host, weight=1.0, captions=CAPTIONS, positive=None, folder="", steps=3, lr=1e-3, checkpointing=False,
          data=None, batch=2, model=None, noise_levels=1.0, level="auto", blocks="auto", optimizer="AdamW"):
    from pos_spatial_pack.nodes.train_lora import PoSTrainLoRA

    positive = encode_all(host, captions) if positive is None else positive
    with torch.inference_mode():
        return PoSTrainLoRA.execute(model or host.model, data or latents(len(captions)), positive, host.clip, folder,
                                    "\n".join(captions), weight, noise_levels, level, batch, 1, steps, lr, 4, optimizer,
                                    "MSE", 0,
                                    "fp32", "fp32", "LoRA", checkpointing, blocks).result


def test_trains_both_loss_parts_and_counts_captions_without_relations(host):
    _, _, loss, steps, graph, summary = train(host, weight=1.0)
    assert steps == 3 and len(loss["loss"]) == len(loss["diffusion"]) == len(loss["pos"]) == 3
    for total, d, p in zip(loss["loss"], loss["diffusion"], loss["pos"]):
        assert total == pytest.approx(d + 1.0 * p, rel=1e-5) and p > 0
    assert "with a left/right/above/below relation (PoS loss): 3; without (diffusion loss only): 1" in summary
    assert graph.shape[0] == 1 and graph.shape[-1] == 3 and 0 <= float(graph.min()) <= float(graph.max()) <= 1
    # the control: weight 0 trains the diffusion loss alone, on the same batches and noise
    _, _, control, _, _, _ = train(host, weight=0.0)
    assert all(p == 0 for p in control["pos"])
    assert control["diffusion"][0] == pytest.approx(loss["diffusion"][0], rel=1e-5)  # same first batch and noise


def test_the_lora_loads_with_comfyuis_loader_and_changes_the_image(host):
    import comfy.sd

    _, lora, _, _, _, _ = train(host, weight=1.0, steps=2, lr=1e-2)
    keys = [k for k in lora if k.endswith("lora_up.weight")]
    assert keys and all(k.startswith("diffusion_model.") for k in keys)
    with torch.inference_mode():
        patched, _ = comfy.sd.load_lora_for_models(host.model, None, lora, 1.0, 0)
    adapted = {k.rsplit(".", 2)[0] + ".weight" for k in keys}
    loaded = {k[len(""):] for k in patched.patches}
    assert adapted <= loaded, sorted(adapted - loaded)[:5]  # every trained weight is applied by Load LoRA
    cond = encode_all(host, ["a cat to the left of a dog"])
    a = sample(host, host.model, cond, seed=1, steps=2, size=64)
    b = sample(host, patched, cond, seed=1, steps=2, size=64)
    assert not torch.equal(a, b)


def test_pos_weight_changes_what_is_learned_and_lowers_the_pos_loss(host):
    """A strong PoS term on one repeated sample: its PoS loss falls over the steps (the gradient reaches the
    LoRA through the captured maps); the control's LoRA differs from it."""
    caps = ["a cat to the left of a dog"] * 4
    data = {"samples": latents(1, 5)["samples"].repeat(4, 1, 1, 1)}
    _, lora, loss, _, _, _ = train(host, weight=100.0, captions=caps, data=data, steps=12, lr=5e-3, batch=4)
    first, last = sum(loss["pos"][:3]) / 3, sum(loss["pos"][-3:]) / 3
    assert last < 0.8 * first, loss["pos"]
    _, control, _, _, _, _ = train(host, weight=0.0, captions=caps, data=data, steps=12, lr=5e-3, batch=4)
    assert any(not torch.equal(lora[k], control[k]) for k in lora)


def test_pos_noise_levels_limits_the_pos_term_to_the_noisiest_samples(host):
    """pos_noise_levels 0.5: only samples drawn in the noisier half of noise levels get the PoS term, so
    some steps' PoS part is 0 (batch 1) while the diffusion part is the same run's as with 1.0."""
    caps = [c for c in CAPTIONS if c != "a photo of a bird"]  # every caption has a relation
    _, _, full, _, _, _ = train(host, weight=1.0, captions=caps, steps=8, batch=1)
    _, _, half, _, _, summary = train(host, weight=1.0, captions=caps, steps=8, batch=1, noise_levels=0.5)
    assert all(p > 0 for p in full["pos"]) and 0 < sum(p == 0 for p in half["pos"]) < 8, half["pos"]
    assert "on the noisiest 50 % of noise levels" in summary
    assert half["diffusion"][0] == pytest.approx(full["diffusion"][0], rel=1e-5)  # same batches and noise


def test_gradient_checkpointing_gives_the_same_lora(host):
    """Checkpointing recomputes activations in backward; the captured level is kept out of it (its attn2
    patch would land on another layer in the recomputation), so both give the same weights."""
    _, plain, lp, _, _, _ = train(host, weight=1.0, steps=2)
    _, ckpt, lc, _, _, _ = train(host, weight=1.0, steps=2, checkpointing=True)
    assert lp["pos"] == pytest.approx(lc["pos"], rel=1e-5)
    for k in plain:
        torch.testing.assert_close(plain[k], ckpt[k], rtol=1e-4, atol=1e-6)


def test_bad_input_names_what_is_wrong(host):
    with pytest.raises(ValueError, match="4 latents, 4 conditionings and 3 captions"):
        train(host, captions=CAPTIONS[:3], positive=encode_all(host, CAPTIONS), data=latents(4))
    with pytest.raises(ValueError, match="caption line 1: its caption 'a cat to the left of a dog' does not encode"):
        train(host, positive=encode_all(host, list(reversed(CAPTIONS))))
    with pytest.raises(ValueError, match="no caption has a left / right / above / below relation"):
        train(host, captions=["a photo of a bird", "a red car"])
    with pytest.raises(ValueError, match="attention_level must be one of auto, latent/1.*for training, got 'maps'"):
        train(host, level="maps")
    with pytest.raises(ValueError, match="dataset_folder 'no_such_folder' is not a folder in ComfyUI's input folder"):
        train(host, folder="no_such_folder")
    with pytest.raises(ValueError, match="dataset_folder and captions are both empty"):
        train(host, captions=[""], positive=encode_all(host, ["x"]), data=latents(1))


def test_sr4g_folder_relations_and_a_stale_one_names_the_sample(host, tmp_path, monkeypatch):
    """Captions and relations from an SR4G export folder (its pos_relations.jsonl), in the loader's order;
    a relation whose words are not in its caption stops the node naming the sample."""
    import folder_paths
    from PIL import Image
    from pos_spatial_pack.nodes.train_lora import caption_of, dataset_files

    folder = tmp_path / "sr4g_x"
    folder.mkdir()
    rows = []
    for i, (cap, rel, s, o) in enumerate([("a dog to the left of a cat", "left of", "a dog", "a cat"),
                                          ("two cups above a clock", "above", "two cups", "a clock"),
                                          ("a dog inside a car", "inside", "a dog", "a car")]):
        Image.new("RGB", (8, 8)).save(folder / f"{i:04d}_000.jpg")
        (folder / f"{i:04d}_000.txt").write_text(cap + "\n")
        rows.append({"file_name": f"{i:04d}_000.jpg", "caption": cap, "relation": rel, "subject_phrase": s,
                     "object_phrase": o})
    (folder / "pos_relations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path))
    caps = [caption_of(f) for f in dataset_files(str(folder))]  # the loader's order
    _, _, _, _, _, summary = train(host, captions=caps, folder="sr4g_x", data=latents(3))
    assert "(PoS loss): 2; without (diffusion loss only): 1" in summary  # "inside" cannot be guided
    rows[1]["subject_phrase"] = "two mugs"
    (folder / "pos_relations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = caps.index("two cups above a clock")
    with pytest.raises(ValueError, match=rf"sample {bad} \(0001_000.jpg\): its relation 'two mugs above a clock'"):
        train(host, captions=caps, folder="sr4g_x", data=latents(3))


def dit_model(kind: str, seed: int = 0):
    """A tiny random Flux.1 (schnell: no guidance input) or SD3 whose text stream is the fixture CLIP's
    768-wide context, so captions encoded by host.clip train it and bind to its tokens."""
    import comfy.sd
    import dit_fixtures

    with torch.inference_mode():
        if kind == "flux":
            return dit_fixtures.flux(schnell=True, seed=seed, context_in_dim=768)
        sd = dit_fixtures.sd3_state_dict(seed=seed, context_dim=768, pooled_dim=768)
        return comfy.sd.load_diffusion_model_state_dict(sd)


def dit_latents(n=4, seed=0):
    return {"samples": torch.randn(n, 16, 8, 8, generator=torch.Generator().manual_seed(seed))}


@pytest.mark.parametrize("kind,blocks", [("flux", "auto"), ("flux", "0,s1"), ("sd3", "auto")])
def test_dit_trains_both_loss_parts_on_joint_attention(host, kind, blocks):
    """Flux and SD3: the PoS term is read on the chosen blocks' joint attention in the same forward, the
    LoRA is in the format Load LoRA reads and changes the image (SD3's block 0 has the image-only second
    attention, which the capture must skip)."""
    import comfy.sd

    model = dit_model(kind)
    _, lora, loss, _, _, summary = train(host, weight=1.0, model=model, data=dit_latents(), steps=2, lr=1e-2,
                                         blocks=blocks)
    for total, d, p in zip(loss["loss"], loss["diffusion"], loss["pos"]):
        assert total == pytest.approx(d + p, rel=1e-5) and p > 0
    want = {"flux": {"auto": "blocks: 1", "0,s1": "blocks: 0,s1"}, "sd3": {"auto": "blocks: "}}[kind][blocks]
    assert want in summary, summary
    ups = [k for k in lora if k.endswith("lora_up.weight")]
    assert ups and all(k.startswith("diffusion_model.") for k in ups)
    with torch.inference_mode():
        patched, _ = comfy.sd.load_lora_for_models(model, None, lora, 1.0, 0)
    assert {k.rsplit(".", 2)[0] + ".weight" for k in ups} <= set(patched.patches)
    cond = encode_all(host, ["a cat to the left of a dog"])
    a = sample(host, model, cond, seed=1, steps=2, cfg=1.0, size=64)
    b = sample(host, patched, cond, seed=1, steps=2, cfg=1.0, size=64)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_dit_pos_loss_falls_and_differs_from_the_control(host, kind):
    """A strong PoS term on one repeated sample: its PoS loss falls (the gradient reaches the LoRA through
    the joint-attention maps); the control's LoRA differs."""
    model = dit_model(kind, seed=3)
    caps = ["a cat to the left of a dog"] * 4
    data = {"samples": dit_latents(1, 5)["samples"].repeat(4, 1, 1, 1)}
    _, lora, loss, _, _, _ = train(host, weight=100.0, captions=caps, data=data, steps=12, lr=5e-3, batch=4,
                                   model=model)
    first, last = sum(loss["pos"][:3]) / 3, sum(loss["pos"][-3:]) / 3
    assert last < 0.8 * first, loss["pos"]
    _, control, closs, _, _, _ = train(host, weight=0.0, captions=caps, data=data, steps=12, lr=5e-3, batch=4,
                                       model=model)
    assert all(p == 0 for p in closs["pos"]) and closs["diffusion"][0] == pytest.approx(loss["diffusion"][0], rel=1e-5)
    assert any(not torch.equal(lora[k], control[k]) for k in lora)


def test_dit_gradient_checkpointing_gives_the_same_lora(host):
    """Flux: the capture rides in each block call's own options, so checkpointing's recomputation runs the
    same ops; both settings give the same PoS losses and the same weight updates (compared as updates from
    the initial weights, lr 0). Float noise: 0.14 % of the update here, and as much with pos_weight 0 (stock
    training with and without checkpointing); a map recorded twice or on the wrong block differs by far more."""
    model = dit_model("flux")
    kw = dict(weight=1.0, steps=2, model=model, data=dit_latents(), blocks="0,s1", optimizer="SGD")
    _, init, _, _, _, _ = train(host, lr=0.0, **kw)
    _, plain, lp, _, _, _ = train(host, lr=0.1, **kw)
    _, ckpt, lc, _, _, _ = train(host, lr=0.1, checkpointing=True, **kw)
    # step 2's loss follows the first update, float noise included (2e-5 relative seen on ComfyUI 0.33, torch 2.11)
    assert lp["pos"] == pytest.approx(lc["pos"], rel=1e-4)
    step = sum(float((plain[k] - init[k]).norm()) ** 2 for k in plain) ** 0.5
    gap = sum(float((plain[k] - ckpt[k]).norm()) ** 2 for k in plain) ** 0.5
    assert step > 0 and gap <= 1e-2 * step, (gap, step)


def test_blocks_and_level_bad_input_names_the_input(host):
    flux = dit_model("flux")
    with pytest.raises(ValueError, match="blocks 'maps' is PoS Guidance's per-run choice, not for training"):
        train(host, model=flux, data=dit_latents(), blocks="maps")
    with pytest.raises(ValueError, match="blocks: s7 is out of range: this model has 2 single blocks"):
        train(host, model=flux, data=dit_latents(), blocks="s7")
    with pytest.raises(ValueError, match="attention_level applies to UNet models; this is flux"):
        train(host, model=flux, data=dit_latents(), level="latent/1")
    with pytest.raises(ValueError, match="blocks applies to Flux / SD3 models; this is sd1"):
        train(host, blocks="1,2")
    from pos_spatial_pack.nodes.train_lora import PoSTrainLoRA

    with pytest.raises(ValueError, match="softmax must be text or joint, got 'image'"):
        PoSTrainLoRA._targets(None, True, "auto", "auto", "image")


def test_training_images_of_several_sizes_are_refused_naming_latents(host):
    """Make Training Dataset's per-image latents must share one size: the error names `latents` and says
    to resize before encoding; a list of same-size latents becomes one batch, as 0.3.x's VAE Encode gives."""
    from pos_spatial_pack.nodes import train_lora

    same = [{"samples": torch.zeros(1, 4, 8, 8)}, {"samples": torch.ones(1, 4, 8, 8)}]
    assert train_lora.dataset_latents(same)["samples"].shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match=r"latents: the training images have 2 different sizes.*resize them"):
        train_lora.dataset_latents([same[0], {"samples": torch.zeros(1, 4, 8, 16)}])
    with pytest.raises(ValueError, match="latents is empty"):
        train_lora.dataset_latents([])
