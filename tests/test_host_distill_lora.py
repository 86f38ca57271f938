"""PoS Distill LoRA in the real ComfyUI (in-process, random-weight SD1.5 fixture): the teacher's trajectories
recorded as the sampler took them, the LoRA trained toward them in ComfyUI's LoRA format, the preview, and
bad input. Whether the LoRA draws relations right is measured on the trained testbed (benchmarks/distill.py,
docs/distill_lora.md), not on a random model."""

from __future__ import annotations

import pytest
import torch
from comfy_host import sample

PROMPTS = "a cat to the left of a dog\na cup above a clock"


def distil(host, teacher="psg", prompts=PROMPTS, steps=3, train_steps=3, trajectories=1, lr=1e-3, seed=0,
           model=None, clip=None, **kw):
    from pos_spatial_pack.nodes.distill_lora import PoSDistillLoRA

    args = {"model": model or host.model, "clip": clip or host.clip, "prompts": prompts, "teacher": teacher, "scale": 20.0,
                "guided_fraction": 0.5, "layout_margin": 0.0625, "sampler_name": "euler", "scheduler": "normal", "steps": steps,
                "cfg": 5.0, "width": 64, "height": 64, "trajectories": trajectories, "base_fraction": 0.0, "rank": 4,
                "train_steps": train_steps, "batch_size": 4, "learning_rate": lr, "seed": seed, "training_dtype": "fp32",
                "gradient_checkpointing": False, "preview_prompt": "a bird below a car"}
    args.update(kw)
    with torch.inference_mode():
        return PoSDistillLoRA.execute(**args).result


def records(host, teacher, steps=4, prompts=PROMPTS):
    """The teacher's recorded steps, as the node records them."""
    import comfy.utils
    from pos_spatial_pack.nodes.distill_lora import PoSDistillLoRA

    texts = prompts.splitlines()
    with torch.inference_mode():
        return PoSDistillLoRA._teacher(host.model, host.clip, texts, teacher, 20.0, 0.5, 0.0625, "euler", "normal",
                                       steps, 5.0, 64, 64, 1, 0.0, 0, "", comfy.utils.ProgressBar(100))


def test_records_are_the_teachers_own_euler_moves(host):
    """Each recorded state and denoised prediction gives the next recorded state by the Euler step: the
    records are what the sampler did (guidance folded in), so the student learns the teacher's move."""
    import comfy.samplers

    recs, positive, _, guided = records(host, "psg")
    assert guided == 2 and len(positive) == 2 and len(recs) == 2 * 4
    sig = comfy.samplers.KSampler(host.model, steps=4, device="cpu", sampler="euler", scheduler="normal",
                                  denoise=1.0).sigmas.tolist()
    for start in (0, 4):
        for i in range(3):
            x, d = recs.x[start + i], recs.target[start + i]
            nxt = x + (x - d) / sig[i] * (sig[i + 1] - sig[i])
            assert torch.allclose(nxt, recs.x[start + i + 1], atol=1e-4 * float(x.abs().max()) + 1e-5)
    base, _, _, g0 = records(host, "none")
    assert g0 == 0
    assert torch.equal(base.x[0], recs.x[0])  # the same noise: one seed per trajectory
    # PoS Guidance moves the teacher's first (guided) prediction away from the base's
    assert not torch.allclose(base.target[0], recs.target[0])


def test_layout_teacher_differs_from_the_base_and_trains(host):
    recs, _, _, guided = records(host, "layout")
    base, _, _, _ = records(host, "none")
    assert guided == 2 and not torch.allclose(base.target[0], recs.target[0])


def test_distils_a_lora_comfyuis_loader_reads_and_the_loss_falls(host):
    import comfy.sd

    _, lora, loss, steps, graph, preview, summary = distil(host, train_steps=12, lr=1e-2, trajectories=2)
    assert steps == 12 and len(loss["loss"]) == 12 and all(v > 0 for v in loss["loss"])
    assert sum(loss["loss"][-3:]) < sum(loss["loss"][:3]), loss["loss"]
    keys = [k for k in lora if k.endswith("lora_up.weight")]
    assert keys and all(k.startswith("diffusion_model.") for k in keys)
    assert "prompts: 2; the psg teacher guided 2" in summary and "recorded steps: 12" in summary
    assert graph.shape[0] == 1 and graph.shape[-1] == 3
    assert preview.shape[0] == 1 and preview.shape[-1] == 3 and 0 <= float(preview.min()) <= float(preview.max()) <= 1
    with torch.inference_mode():
        patched, _ = comfy.sd.load_lora_for_models(host.model, None, lora, 1.0, 0)
        zero, _ = comfy.sd.load_lora_for_models(host.model, None, lora, 0.0, 0)
    cond = host.nodes.CLIPTextEncode().encode(host.clip, "a bird below a car")[0]
    a = sample(host, host.model, cond, seed=1, steps=2, size=64)
    assert not torch.equal(a, sample(host, patched, cond, seed=1, steps=2, size=64))
    assert torch.equal(a, sample(host, zero, cond, seed=1, steps=2, size=64))  # strength 0: the base exactly


def test_control_and_teacher_loras_differ_from_the_same_seeds(host):
    _, psg, _, _, _, _, _ = distil(host, lr=1e-2)
    _, ctrl, _, _, _, _, s = distil(host, teacher="none", lr=1e-2)
    assert "the none teacher guided 0" in s
    assert any(not torch.equal(psg[k], ctrl[k]) for k in psg)


def test_objects_crossed_with_phrasings_become_the_prompts(host):
    from pos_spatial_pack.nodes.distill_lora import distill_prompts

    got = distill_prompts("", "cat, dog", "a {a} left of a {b}", "")
    assert got == ["a cat left of a dog", "a dog left of a cat"]
    _, _, _, _, _, _, s = distil(host, prompts="", objects="cat\ndog", steps=2, train_steps=1, teacher="layout")
    assert "prompts: 8" in s  # two orders x the four default phrasings


@pytest.mark.parametrize("kw,words", [
    ({"prompts": ""}, "prompts, objects and dataset_folder are all empty"),
    ({"prompts": "a photo of a cat"}, "none of the 1 prompts has a relation"),
    ({"teacher": "magic"}, "teacher must be one of"),
    ({"width": 60}, "multiples of 8"),
    ({"objects": "cat"}, "objects: give at least two"),
    ({"dataset_folder": "no_such_folder_here"}, "dataset_folder 'no_such_folder_here' is not a folder"),
    ({"sampler_name": "no_such_sampler"}, "sampler_name / scheduler: 'no_such_sampler'"),
    ({"scheduler": "no_such_scheduler"}, "'no_such_scheduler' is not one this ComfyUI has"),
    ({"rank": 0}, "rank must be from 1 to 128, got 0"),
    ({"train_steps": 0}, "train_steps must be from 1 to 100000, got 0"),
    ({"trajectories": 300}, "trajectories must be from 1 to 256, got 300"),
])
def test_bad_input_names_the_input(host, kw, words):
    with pytest.raises(ValueError, match=words):
        distil(host, **kw)


def test_refuses_a_model_family_it_cannot_train(host):
    import comfy.model_patcher

    with pytest.raises(ValueError, match="model"):
        distil(host, model=comfy.model_patcher.ModelPatcher(torch.nn.Linear(1, 1), "cpu", "cpu"))


@pytest.mark.parametrize("kind,teacher", [("flux", "psg"), ("sd3", "layout+psg")])
def test_dit_teacher_records_and_distils(host, kind, teacher):
    """Flux.1 (cfg 1, one pass a state) and SD3 (cfg 5): the guided teacher's steps are recorded and a LoRA
    in Load LoRA's format is trained through the stock blocks (autograd's mutation mode for their in-place
    adds), on tiny random models whose text stream is the fixture CLIP's."""
    import comfy.sd
    from test_host_pos_lora import dit_model

    model = dit_model(kind)
    cfg = 1.0 if kind == "flux" else 5.0
    _, lora, loss, _, _, preview, summary = distil(host, model=model, teacher=teacher, cfg=cfg, steps=2,
                                                   train_steps=2, lr=1e-2)
    assert f"the {teacher} teacher guided 2" in summary and "recorded steps: 4" in summary, summary
    assert all(v == v and v > 0 for v in loss["loss"]), loss
    ups = [k for k in lora if k.endswith("lora_up.weight")]
    assert ups and all(k.startswith("diffusion_model.") for k in ups)
    with torch.inference_mode():
        patched, _ = comfy.sd.load_lora_for_models(model, None, lora, 1.0, 0)
    cond = host.nodes.CLIPTextEncode().encode(host.clip, "a bird below a car")[0]
    a = sample(host, model, cond, seed=1, steps=2, cfg=cfg, size=64)
    assert not torch.equal(a, sample(host, patched, cond, seed=1, steps=2, cfg=cfg, size=64))
    assert preview.shape[0] == 1 and preview.shape[-1] == 3


def test_cancelling_stops_the_node_and_returns_nothing(host):
    """ComfyUI's Cancel (the interrupt flag) stops the teacher's sampling with ComfyUI's own exception: the node
    returns no LoRA, so nothing partial reaches Save LoRA."""
    import comfy.model_management as mm

    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            distil(host)
    finally:
        mm.interrupt_current_processing(False)
