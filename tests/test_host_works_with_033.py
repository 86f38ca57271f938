"""PoS Guidance beside what ComfyUI 0.33 added since 0.3.64 (docs/works-with.md): the new model patches,
guiders, samplers and sigma nodes, through the real server, checked as test_host_works_with.py checks the
stock ones (guided in both orders, guidance acts, scale 0 equals the graph without PoS Guidance). Each row
skips, naming the node, on a ComfyUI that lacks it."""

from __future__ import annotations

import pytest

from test_host_works_with import SKIP_NOTE, STEPS, check, custom, graph, model_node, srv  # noqa: F401  (srv: a fixture)


def need(srv, *classes):
    missing = [c for c in classes if c not in srv.info]
    if missing:
        pytest.skip(f"{', '.join(missing)}: not in this ComfyUI (added after 0.3.64)")


MODEL_PATCHES = {
    "CFGOverride": dict(cfg=2.0, start_percent=0.0, end_percent=0.5),
    "NAGuidance": dict(nag_scale=5.0, nag_alpha=0.5, nag_tau=1.5),
}


@pytest.mark.parametrize("cls", sorted(MODEL_PATCHES))
def test_new_model_patches(srv, cls):
    need(srv, cls)
    check(srv, patch=model_node(cls, **MODEL_PATCHES[cls]))


def test_model_attention_backend(srv):
    need(srv, "ModelAttentionBackend")
    backends = srv.info["ModelAttentionBackend"]["input"]["required"]["attention"][0]
    choice = "pytorch" if "pytorch" in backends else backends[0]
    check(srv, patch=model_node("ModelAttentionBackend", attention=choice))


def unguided_with_a_note(srv, patch) -> None:
    """A setup the gradient pass cannot differentiate: the graph still runs, the log and the node say the
    guided steps ran unguided (the pack's "could not be computed" note), and the result is the unguided one."""
    from safetensors.torch import load_file

    def run(g):
        before = srv.log.read_text()
        entry = srv.run(g)
        f = entry["outputs"]["save"]["latents"][0]
        lat = load_file(str(srv.base / f["type"] / f.get("subfolder", "") / f["filename"]))["latent_tensor"]
        return lat.float(), srv.log.read_text()[len(before):]

    plain, _ = run(graph(srv, patch=patch, guided=False))
    guided, log = run(graph(srv, patch=patch, scale=50.0))
    assert SKIP_NOTE in log, log[-3000:]
    assert (guided - plain).abs().max() <= 1e-4 * float(plain.abs().max()), "the skipped steps changed the latent"


def test_lora_loader_bypass_runs_unguided_with_a_note(srv):
    """LoraLoaderBypass applies the LoRA in forward hooks whose weights are inference tensors outside the
    model's parameters: documented as not guided (use LoraLoaderModelOnly, which is guided)."""
    need(srv, "LoraLoaderBypassModelOnly")
    import comfy_host

    unguided_with_a_note(srv, model_node("LoraLoaderBypassModelOnly", lora_name=comfy_host.fixture_lora().name,
                                         strength_model=1.0))


@pytest.mark.parametrize("name", ["exp_heun_2_x0", "exp_heun_2_x0_sde"])
def test_new_ksampler_samplers(srv, name):
    if name not in srv.info["KSampler"]["input"]["required"]["sampler_name"][0]:
        pytest.skip(f"sampler {name}: not in this ComfyUI")

    def ks(g, m, pos):
        g["ks"] = {"class_type": "KSampler", "inputs": {
            "model": m, "positive": pos, "negative": ["neg", 0], "latent_image": ["lat", 0], "seed": 7,
            "steps": STEPS, "cfg": 5.0, "sampler_name": name, "scheduler": "normal", "denoise": 1.0}}
        return ["ks", 0]

    check(srv, sampler=ks)


def custom_sampler(sampler_node: dict, sigmas=None):
    """SamplerCustom with the given sampler node and BasicScheduler sigmas (or a sigma node)."""
    def sampler(g, m, pos):
        g["smp"] = sampler_node
        g["sig"] = sigmas or {"class_type": "BasicScheduler", "inputs": {"model": m, "scheduler": "normal",
                                                                        "steps": STEPS, "denoise": 1.0}}
        g["sc"] = {"class_type": "SamplerCustom", "inputs": {
            "model": m, "add_noise": True, "noise_seed": 7, "cfg": 5.0, "positive": pos, "negative": ["neg", 0],
            "sampler": ["smp", 0], "sigmas": ["sig", 0], "latent_image": ["lat", 0]}}
        return ["sc", 0]

    return sampler


def test_sampler_seeds2(srv):
    need(srv, "SamplerSEEDS2")
    check(srv, sampler=custom_sampler({"class_type": "SamplerSEEDS2", "inputs": {
        "solver_type": "phi_2", "eta": 1.0, "s_noise": 1.0, "r": 0.5}}))


def test_manual_sigmas(srv):
    need(srv, "ManualSigmas")
    check(srv, sampler=custom_sampler({"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
                                      {"class_type": "ManualSigmas", "inputs": {"sigmas": "14.6, 7.0, 3.0, 1.0, 0"}}))


def test_dual_model_guider(srv):
    """DualModelGuider: the guided MODEL on the positive pass, the checkpoint's on the negative."""
    need(srv, "DualModelGuider")
    check(srv, sampler=custom("DualModelGuider", model_negative=["ckpt", 0], cfg=5.0))
