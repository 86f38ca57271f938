"""When the guidance gradient cannot be had beside another node, the step runs unguided with a note and the
sampler finishes; an in-place patch is taken straight-through instead (in-process, real ComfyUI)."""

from __future__ import annotations

import torch

import comfy_host

PROMPT = "a photo of a cat to the left of a dog"


def test_a_wrapper_that_fails_under_gradients_leaves_steps_unguided_with_a_note(host):
    cond, rels = comfy_host.encode(host, PROMPT)
    plain = comfy_host.sample(host, host.model, cond, seed=3, size=64)
    model = host.model.clone()

    def refuses_gradients(apply_model, args):
        if args["input"].requires_grad:
            raise RuntimeError("this wrapper cannot run with gradients")
        return apply_model(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(refuses_gradients)
    guided, run = comfy_host.guide(host, rels, model=model)
    out = comfy_host.sample(host, guided, cond, seed=3, size=64)
    assert torch.equal(out, plain), "every step ran unguided: the result is the unguided one"
    assert run.skipped == [0, 1] and not run.deltas
    assert len(run.notes) == 1 and "could not be computed" in run.notes[0] and "cannot run with gradients" in run.notes[0]


def test_an_in_place_patch_is_taken_straight_through(host):
    cond, rels = comfy_host.encode(host, PROMPT)
    model = host.model.clone()
    calls = []

    def scale_in_place(h, hsp, transformer_options):
        calls.append(h.requires_grad)
        h[:, : h.shape[1] // 2] = h[:, : h.shape[1] // 2] * (1.0 + 0.1 * h.mean(1, keepdim=True))
        return h, hsp

    model.set_model_output_block_patch(scale_in_place)
    zero, _ = comfy_host.guide(host, rels, scale=0.0, model=model)
    base = comfy_host.sample(host, zero, cond, seed=3, size=64)
    guided, run = comfy_host.guide(host, rels, model=model)
    out = comfy_host.sample(host, guided, cond, seed=3, size=64)
    assert True in calls, "the patch ran in the gradient pass"
    assert not run.notes and not run.skipped and sorted(run.deltas) == [0, 1]
    assert not torch.equal(out, base)
