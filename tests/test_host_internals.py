"""Guards of the ComfyUI internals the pack relies on (docs/comfyui-versions.md): one test per internal, each
failing with a message that names the internal and the page's section, so a future ComfyUI that changes one
is caught by name instead of by a failing graph somewhere else. Run against the checkout at COMFYUI_PATH."""

from __future__ import annotations

import inspect

import pytest
import torch

PAGE = "docs/comfyui-versions.md"


def changed(internal: str, detail: str) -> str:
    return f"ComfyUI internal '{internal}' changed: {detail} (see {PAGE}, '{internal}')"


def has(obj, names: list[str], internal: str, what: str) -> None:
    missing = [n for n in names if not hasattr(obj, n)]
    assert not missing, changed(internal, f"{what} has no {', '.join(missing)}")


def params(fn, names: list[str], internal: str) -> None:
    got = list(inspect.signature(fn).parameters)
    missing = [n for n in names if n not in got]
    assert not missing, changed(internal, f"{getattr(fn, '__qualname__', fn)}{inspect.signature(fn)} lacks {missing}")


def test_v3_node_schema(host):
    from comfy_api.latest import ComfyExtension, io, ui

    internal = "V3 node schema"
    has(io, ["ComfyNode", "Schema", "NodeOutput", "String", "Int", "Float", "Boolean", "Combo", "Custom", "Model",
             "Clip", "Vae", "Conditioning", "Latent", "Image", "Mask", "AnyType", "LossMap", "LoraModel", "Hidden"],
        internal, "comfy_api.latest.io")
    has(ui, ["PreviewImage", "PreviewText"], internal, "comfy_api.latest.ui")
    fields = set(inspect.signature(io.Schema).parameters)
    for f in ("node_id", "display_name", "category", "description", "inputs", "outputs", "is_experimental",
              "is_input_list", "is_output_node"):
        assert f in fields, changed(internal, f"io.Schema has no field {f}")
    assert inspect.iscoroutinefunction(ComfyExtension.get_node_list), changed(internal, "get_node_list is not async")
    from pos_spatial_pack.nodes import NODES

    assert len(NODES) == len({n.define_schema().node_id for n in NODES}), changed(internal, "node ids collide")


def test_attn2_replace_slot(host):
    """UNet cross-attention: set_model_attn2_replace puts fn(q, k, v, extra_options) in the slot, and
    extra_options carries what the maps need."""
    import comfy.model_patcher

    internal = "attn2 replace"
    params(comfy.model_patcher.ModelPatcher.set_model_attn2_replace, ["patch", "block_name", "number",
                                                                      "transformer_index"], internal)
    m = host.model.clone()
    seen = []

    def fn(q, k, v, extra_options):
        seen.append(dict(extra_options))
        from comfy.ldm.modules.attention import optimized_attention
        return optimized_attention(q, k, v, extra_options["n_heads"])

    m.set_model_attn2_replace(fn, "input", 1)
    cond = host.nodes.CLIPTextEncode().encode(host.clip, "a cat to the left of a dog")[0]
    with torch.inference_mode():
        latent = torch.zeros(1, 4, 32, 32)
        host.comfy_sample.sample(m, torch.randn(1, 4, 32, 32), 1, 1.0, "euler", "normal", cond, cond, latent)
    assert seen, changed(internal, "the attn2 replace of ('input', 1) was never called")
    for key in ("block", "block_index", "activations_shape", "cond_or_uncond", "n_heads", "dim_head", "sigmas",
                "sample_sigmas", "transformer_index"):
        assert key in seen[0], changed(internal, f"extra_options has no '{key}' (has {sorted(seen[0])})")
    assert seen[0]["block"] == ("input", 1) and len(seen[0]["activations_shape"]) == 4


def test_dit_block_replace_slot(host):
    """Flux / SD3: set_model_patch_replace(fn, "dit", "double_block" | "single_block", i) is called with the
    block's arguments and {"original_block": ...}."""
    import comfy.model_patcher
    import dit_fixtures

    internal = "dit block replace"
    params(comfy.model_patcher.ModelPatcher.set_model_patch_replace, ["patch", "name", "block_name", "number"],
           internal)
    with torch.inference_mode():
        m = dit_fixtures.flux()
    seen = {}

    def patch_for(kind):
        def fn(args, extra):
            seen[kind] = (set(args), set(extra))
            return extra["original_block"](args)
        return fn

    m.set_model_patch_replace(patch_for("double"), "dit", "double_block", 0)
    m.set_model_patch_replace(patch_for("single"), "dit", "single_block", 0)
    pos, neg = dit_fixtures.conds("flux")
    with torch.inference_mode():
        host.comfy_sample.sample(m, torch.randn(1, 16, 8, 8), 1, 1.0, "euler", "simple", pos, neg,
                                 torch.zeros(1, 16, 8, 8))
    assert set(seen) == {"double", "single"}, changed(internal, f"only {sorted(seen)} blocks called their replace")
    for key in ("img", "txt", "vec", "pe", "transformer_options"):
        assert key in seen["double"][0], changed(internal, f"a double block's args have no '{key}'")
    for key in ("img", "vec", "pe", "transformer_options"):
        assert key in seen["single"][0], changed(internal, f"a single block's args have no '{key}'")
    assert "original_block" in seen["double"][1], changed(internal, "no 'original_block' in the replace's extra")


def test_attention_override(host):
    """transformer_options["optimized_attention_override"] is called for the DiT's joint attention."""
    import dit_fixtures

    internal = "optimized_attention_override"
    with torch.inference_mode():
        m = dit_fixtures.flux()
    calls = []

    def override(func, *args, **kwargs):
        calls.append(args[0].shape)
        return func(*args, **kwargs)

    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
    pos, neg = dit_fixtures.conds("flux")
    with torch.inference_mode():
        host.comfy_sample.sample(m, torch.randn(1, 16, 8, 8), 1, 1.0, "euler", "simple", pos, neg,
                                 torch.zeros(1, 16, 8, 8))
    assert calls, changed(internal, "the override was never called by Flux's attention")


def test_model_wrappers(host):
    """The sampling wrappers PoS Guidance and PoS Seed Search install, with the signatures they use."""
    import comfy.model_patcher
    import comfy.patcher_extension
    import comfy.samplers

    internal = "model wrappers"
    has(comfy.patcher_extension.WrappersMP, ["OUTER_SAMPLE", "PREDICT_NOISE", "CALC_COND_BATCH", "APPLY_MODEL",
                                             "DIFFUSION_MODEL"], internal, "WrappersMP")
    params(comfy.model_patcher.ModelPatcher.add_wrapper_with_key, ["wrapper_type", "key", "wrapper"], internal)
    params(comfy.samplers.CFGGuider.predict_noise, ["x", "timestep", "model_options", "seed"], internal)
    params(comfy.samplers.CFGGuider.outer_sample, ["noise", "latent_image", "sampler", "sigmas"], internal)
    params(comfy.samplers.calc_cond_batch, ["model", "conds", "x_in", "timestep", "model_options"], internal)


def test_sampling_entry_points(host):
    import comfy.sample
    import comfy.samplers

    internal = "sampling entry points"
    params(comfy.sample.sample, ["model", "noise", "steps", "cfg", "sampler_name", "scheduler", "positive",
                                 "negative", "latent_image", "start_step", "last_step", "callback", "seed"], internal)
    params(comfy.sample.sample_custom, ["model", "noise", "cfg", "sampler", "sigmas", "positive", "negative",
                                        "latent_image", "callback", "seed"], internal)
    params(comfy.sample.prepare_noise, ["latent_image", "seed"], internal)
    params(comfy.sample.fix_empty_latent_channels, ["model", "latent_image"], internal)
    params(comfy.samplers.KSAMPLER, ["sampler_function", "extra_options", "inpaint_options"], internal)
    has(comfy.samplers.KSampler, ["SAMPLERS", "SCHEDULERS"], internal, "comfy.samplers.KSampler")
    has(comfy.samplers, ["sampler_object", "Sampler", "calculate_sigmas"], internal, "comfy.samplers")


def test_sampler_callback_and_cfg_guider(host):
    """PoS Distill LoRA records a trajectory through comfy.sample.sample's callback (step i, the denoised
    prediction the sampler used, the state at sigmas[i], total steps) and trains through CFGGuider with a
    comfy Sampler whose `sample` gets the guider as its model (nodes/distill_lora.py)."""
    import comfy.sample
    import comfy.samplers

    internal = "sampler callback and CFGGuider"
    params(comfy.samplers.KSampler.__init__, ["model", "steps", "device", "sampler", "scheduler", "denoise"], internal)
    params(comfy.samplers.CFGGuider.set_conds, ["positive", "negative"], internal)
    params(comfy.samplers.CFGGuider.set_cfg, ["cfg"], internal)
    params(comfy.samplers.CFGGuider.sample, ["noise", "latent_image", "sampler", "sigmas", "seed"], internal)
    params(comfy.samplers.KSAMPLER.sample, ["model_wrap", "sigmas", "extra_args", "callback", "noise"], internal)
    seen = []
    cond = host.nodes.CLIPTextEncode().encode(host.clip, "a cat")[0]
    latent = torch.zeros(1, 4, 8, 8)
    with torch.inference_mode():
        sig = comfy.samplers.KSampler(host.model, steps=3, device="cpu", sampler="euler", scheduler="normal",
                                      denoise=1.0).sigmas
        noise = comfy.sample.prepare_noise(latent, 0)
        comfy.sample.sample(host.model, noise, 3, 5.0, "euler", "normal", cond, host.neg, latent,
                            callback=lambda i, x0, x, total: seen.append((i, x0.clone(), x.clone(), total)),
                            disable_pbar=True, seed=0)
    assert [s[0] for s in seen] == [0, 1, 2] and all(s[3] == 3 for s in seen), changed(
        internal, f"the callback's step and total are {[(s[0], s[3]) for s in seen]}")
    x0, s0 = seen[0][2], float(sig[0])  # the first state: the noise at the first sigma (eps models: sqrt(1 + s^2))
    scale = float((x0 * noise).sum() / (noise * noise).sum())
    assert torch.allclose(x0, noise * scale, atol=1e-4) and s0 - 1e-3 <= scale <= (1 + s0 ** 2) ** 0.5 + 1e-3, changed(
        internal, f"the callback's first x is not the noise at sigmas[0] ({scale:.4f} x noise, sigma {s0:.4f})")
    for i in range(2):  # Euler: x_{i+1} = x_i + (x_i - denoised_i) / sigma_i * (sigma_{i+1} - sigma_i)
        _, d, x, _ = seen[i]
        assert torch.allclose(x + (x - d) / sig[i] * (sig[i + 1] - sig[i]), seen[i + 1][2], atol=1e-4), changed(
            internal, "the callback's denoised is not the prediction the step used")


def test_weights_are_inference_tensors_that_dlpack_aliases(host):
    """The gradient pass's zero-copy weights: ComfyUI loads weights as inference tensors, and a DLPack alias
    taken outside inference mode is a normal tensor autograd can save (nodes/families/base.py)."""
    from pos_spatial_pack.nodes.families.base import WeightAliases

    internal = "inference-mode weights"
    dm = host.model.model.diffusion_model
    w = next(p for p in dm.parameters() if p.dim() == 2)
    assert w.is_inference(), changed(internal, "loaded weights are no longer inference tensors (the aliases are "
                                               "then unneeded, but check the gradient pass)")
    aliases = WeightAliases(dm)
    with torch.inference_mode(False), torch.enable_grad(), aliases:
        x = torch.ones(1, w.shape[1], requires_grad=True)
        (x @ next(p for p in dm.parameters() if p.dim() == 2).t()).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad[0], w.float().sum(0), atol=1e-4), changed(
        internal, "the aliased weight does not give the weight's gradient")


def test_flux_block_code(host):
    """The gradient pass's out-of-place copies of Flux's stock blocks (nodes/families/flux.py) read these
    block attributes and helpers; their outputs are checked equal to the stock blocks in test_host_dit.py."""
    from comfy.ldm.flux import layers

    internal = "Flux block code"
    has(layers, ["DoubleStreamBlock", "SingleStreamBlock", "apply_mod"], internal, "comfy.ldm.flux.layers")
    params(layers.apply_mod, ["tensor", "m_mult", "m_add", "modulation_dims"], internal)
    import dit_fixtures

    with torch.inference_mode():
        dm = dit_fixtures.flux().model.diffusion_model
    has(dm.double_blocks[0], ["img_mod", "txt_mod", "img_norm1", "img_attn", "img_norm2", "img_mlp", "txt_norm1",
                              "txt_attn", "txt_norm2", "txt_mlp", "num_heads"], internal, "DoubleStreamBlock")
    has(dm.single_blocks[0], ["modulation", "pre_norm", "linear1", "linear2", "norm", "mlp_act", "hidden_size",
                              "mlp_hidden_dim", "num_heads"], internal, "SingleStreamBlock")
    has(dm, ["double_blocks", "single_blocks", "pe_embedder", "patch_size"], internal, "Flux")


def test_sd3_block_code(host):
    """SD3's joint blocks, as nodes/families/sd3.py mixes them (outputs checked equal in test_host_dit.py)."""
    from comfy.ldm.modules.diffusionmodules import mmdit

    internal = "SD3 block code"
    has(mmdit, ["OpenAISignatureMMDITWrapper", "JointBlock", "block_mixing"], internal, "mmdit")
    import dit_fixtures

    with torch.inference_mode():
        dm = dit_fixtures.sd3().model.diffusion_model
    has(dm, ["joint_blocks", "context_embedder", "x_embedder"], internal, "OpenAISignatureMMDITWrapper")
    has(dm.joint_blocks[0], ["context_block", "x_block"], internal, "JointBlock")
    has(dm.joint_blocks[0].x_block, ["pre_attention", "post_attention", "attn"], internal, "DismantledBlock")


def test_unet_structure(host):
    """UNet levels: the pack finds cross-attention layers through these classes (nodes/families/unet.py)."""
    from comfy.ldm.modules import attention
    from comfy.ldm.modules.diffusionmodules import openaimodel

    internal = "UNet structure"
    has(attention, ["SpatialTransformer", "BasicTransformerBlock", "CrossAttention", "optimized_attention"],
        internal, "comfy.ldm.modules.attention")
    has(openaimodel, ["UNetModel", "Downsample", "Upsample"], internal, "openaimodel")
    dm = host.model.model.diffusion_model
    has(dm, ["input_blocks", "middle_block", "output_blocks"], internal, "UNetModel")
    blk = next(m for m in dm.modules() if isinstance(m, attention.BasicTransformerBlock))
    has(blk, ["attn2"], internal, "BasicTransformerBlock")


def test_model_classes_for_family_detection(host):
    import comfy.ldm.flux.model
    import comfy.model_base
    import comfy.supported_models

    internal = "model classes"
    has(comfy.model_base, ["BaseModel", "SD3", "Flux"], internal, "comfy.model_base")
    has(comfy.supported_models, ["models", "SD15", "Flux", "FluxSchnell", "SD3"], internal, "comfy.supported_models")
    has(comfy.ldm.flux.model, ["Flux", "FluxParams"], internal, "comfy.ldm.flux.model")


def test_tokenize_with_word_ids(host):
    """Token lookup: clip.tokenize(text, return_word_ids=True) gives chunks of (token, weight, word_id)."""
    internal = "tokenize with word ids"
    toks = host.clip.tokenize("a cat", return_word_ids=True)
    assert isinstance(toks, dict) and "l" in toks, changed(internal, f"tokenize gave {type(toks).__name__} "
                                                                     f"{list(toks)[:3] if isinstance(toks, dict) else ''}")
    chunk = toks["l"][0]
    assert len(chunk) == 77 and len(chunk[1]) == 3, changed(internal, f"a chunk is {len(chunk)} of {chunk[1]!r}")
    has(host.clip, ["encode_from_tokens_scheduled", "tokenize"], internal, "CLIP")


def test_trainer_pieces(host):
    """PoS Train LoRA runs ComfyUI's own LoRA trainer pieces (comfy_extras/nodes_train.py, comfy.weight_adapter)."""
    from comfy.weight_adapter import adapter_maps
    from comfy_extras import nodes_custom_sampler, nodes_train

    internal = "LoRA trainer"
    has(nodes_train, ["process_cond_list", "make_batch_extra_option_dict", "find_all_highest_child_module_with_forward",
                      "patch", "unpatch", "BiasDiff"], internal, "comfy_extras.nodes_train")
    params(nodes_train.make_batch_extra_option_dict, ["d", "indicies", "full_size"], internal)
    params(nodes_train.patch, ["m"], internal)
    assert "LoRA" in adapter_maps, changed(internal, f"adapter_maps has {sorted(adapter_maps)}")
    params(adapter_maps["LoRA"].create_train, ["weight", "rank", "alpha"], internal)
    has(nodes_custom_sampler, ["Guider_Basic"], internal, "comfy_extras.nodes_custom_sampler")


def test_management_and_paths(host):
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths
    import node_helpers

    internal = "model management and paths"
    has(mm, ["throw_exception_if_processing_interrupted", "InterruptProcessingException",
             "interrupt_current_processing", "get_free_memory", "load_models_gpu", "intermediate_device",
             "get_torch_device"], internal, "comfy.model_management")
    has(folder_paths, ["add_model_folder_path", "get_folder_paths", "get_input_directory", "get_output_directory",
                       "models_dir"], internal, "folder_paths")
    has(node_helpers, ["conditioning_set_values", "string_to_torch_dtype"], internal, "node_helpers")
    params(comfy.utils.ProgressBar, ["total"], internal)


def test_front_end_folders(comfyui_path):
    """Workflows in the pack's workflows/ are the template browser's; web/docs/<node>.md the docs panel's."""
    internal = "template and docs folders"
    src = (comfyui_path / "app" / "custom_node_manager.py").read_text()
    assert '"workflows"' in src, changed(internal, "custom_node_manager no longer serves a pack's workflows/ folder")


@pytest.mark.parametrize("flag", ["--cpu", "--listen", "--port", "--base-directory", "--disable-auto-launch"])
def test_server_flags(comfyui_path, flag):
    """The flags the host tests start main.py with (tests/comfy_host.py)."""
    src = (comfyui_path / "comfy" / "cli_args.py").read_text()
    assert f'"{flag}"' in src, changed("server flags", f"main.py has no {flag}")


def test_flux2_is_not_taken_for_flux1(host):
    """A Flux.2 model (ComfyUI 0.33's supported_models.Flux2: the same Flux class, global modulation) is never
    guided as Flux.1: Flux.1's detection refuses it by its model_base class and global modulation, and it gets
    the Flux.2 family (whose copies read the modulation from `vec`)."""
    import dit_fixtures
    from pos_spatial_pack.nodes.families import family_of, flux

    with torch.inference_mode():
        m = dit_fixtures.flux2()
    assert type(m.model.diffusion_model).__name__ == "Flux"  # what made it look like Flux.1
    assert type(m.model).__name__ == "Flux2" and m.model.diffusion_model.params.global_modulation
    assert flux.detect(m) is None and family_of(m).name == "flux2"
    with torch.inference_mode():
        assert family_of(dit_fixtures.flux()).name == "flux"


def test_differentiable_model_code(host):
    """A pass that takes gradients through stock model code sets comfy.model_management.in_training where this
    ComfyUI has it (0.33+: else Flux's rope runs a fused kernel with no backward); then a stock Flux forward
    backpropagates to its input."""
    import comfy.model_management as mm
    import dit_fixtures
    from pos_spatial_pack.nodes.families.base import WeightAliases, differentiable

    internal = "differentiable model code"
    with torch.inference_mode():
        m = dit_fixtures.flux()
    dm = m.model.diffusion_model
    pos, _ = dit_fixtures.conds("flux")
    # the stock blocks add to their streams in place: autograd's mutation mode keeps copies (as training does)
    with torch.inference_mode(False), torch.enable_grad(), WeightAliases(dm), differentiable(), \
            torch.autograd.graph.allow_mutation_on_saved_tensors():
        if hasattr(mm, "in_training"):
            assert mm.in_training, changed(internal, "in_training is not set inside differentiable()")
        x = torch.randn(1, 16, 8, 8, requires_grad=True)
        ctx = pos[0][0].clone()
        out = dm(x, torch.tensor([0.5]), ctx, y=pos[0][1]["pooled_output"].clone(), guidance=torch.tensor([3.5]))
        try:
            out.square().mean().backward()
        except RuntimeError as e:
            raise AssertionError(changed(internal, f"a stock Flux forward cannot backpropagate ({e})")) from None
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not getattr(mm, "in_training", False), changed(internal, "in_training left set after the pass")


def _source(obj) -> str:
    return inspect.getsource(obj)


def test_2026_family_model_code(host):
    """What the Flux.2, Chroma, Qwen-Image and Z-Image families read of ComfyUI's model code (each where this
    ComfyUI has the family: Chroma and Qwen-Image on 0.3.64 too)."""
    import comfy.model_base
    import comfy.supported_models

    internal = "2026 family model code"
    if hasattr(comfy.supported_models, "Flux2"):  # Flux.2: Flux's class, model_base.Flux2, global modulation
        import comfy.ldm.flux.model as flux_model
        import comfy.ldm.flux.layers as flux_layers

        has(comfy.model_base, ["Flux2"], internal, "comfy.model_base")
        assert "global_modulation" in {f.name for f in __import__("dataclasses").fields(flux_model.FluxParams)}, \
            changed(internal, "FluxParams has no global_modulation")
        assert "mlp_hidden_dim_first" in _source(flux_layers.SingleStreamBlock.__init__), \
            changed(internal, "SingleStreamBlock has no mlp_hidden_dim_first")
        assert "= vec" in _source(flux_layers.DoubleStreamBlock.forward), \
            changed(internal, "DoubleStreamBlock no longer takes its modulation from vec")
    import comfy.ldm.chroma.model as chroma_model

    has(chroma_model, ["Chroma", "ChromaParams"], internal, "comfy.ldm.chroma.model")
    assert "original_block" in _source(chroma_model.Chroma), changed(internal, "Chroma has no dit block replace")
    import comfy.ldm.qwen_image.model as qwen

    has(qwen, ["QwenImageTransformer2DModel"], internal, "comfy.ldm.qwen_image.model")
    src = _source(qwen.QwenImageTransformer2DModel)
    assert '("double_block", i) in blocks_replace' in src and "original_block" in src, \
        changed(internal, "Qwen-Image has no dit double_block replace")
    assert "transformer_options=transformer_options" in _source(qwen.Attention.forward), \
        changed(internal, "Qwen-Image's attention no longer passes transformer_options (the attention override)")
    if hasattr(comfy.supported_models, "ZImage"):  # Z-Image: NextDiT, read by override + noise_refiner patch
        import comfy.ldm.lumina.model as lumina

        src = _source(lumina.NextDiT)
        for needle in ('"noise_refiner" in patches', 'transformer_options["block_index"] = i',
                       'transformer_options["block_type"] = "double"', "pad_tokens_multiple"):
            assert needle in src, changed(internal, f"NextDiT lacks {needle!r}")
        assert "transformer_options=transformer_options" in _source(lumina.JointAttention.forward), \
            changed(internal, "NextDiT's attention no longer passes transformer_options (the attention override)")


def test_llm_tokenizer_interface(host):
    """What the relation nodes read of the 2026 families' tokenizers: `clip.tokenize(text, llama_template=...)`
    (the bare prompt), the per-encoder tokenizer attribute and its pad_token; the drop and padding rules are
    checked against ComfyUI's code in test_host_tokens_llm.py."""
    import comfy.sd1_clip
    import comfy.text_encoders.qwen_image as qwen_te

    internal = "LLM tokenizer interface"
    params(qwen_te.QwenImageTokenizer.tokenize_with_weights, ["text", "llama_template"], internal)
    src = _source(comfy.sd1_clip.SD1Tokenizer.__init__)
    assert "setattr(self, self.clip" in src, changed(internal, "SD1Tokenizer no longer keeps its tokenizer as an attribute")
    tok = qwen_te.QwenImageTokenizer()
    inner = getattr(tok, "qwen25_7b", None) or getattr(tok, "clip_qwen25_7b", None)
    assert inner is not None and getattr(inner, "pad_token", None) == 151643, changed(internal, "no qwen25_7b pad_token")
    assert "template_end" in _source(qwen_te.QwenImageTEModel.encode_token_weights), \
        changed(internal, "Qwen-Image's encoder no longer drops its template by template_end")
