"""Token indices through the text encoders of the 2026 families, checked against the tokenizers ComfyUI itself
uses (their files ship with ComfyUI; Flux.2 dev's Mistral tokenizer lives in its text-encoder file, so the test
builds it from the Tekken vocabulary that mistral_common publishes on PyPI).

Each CLIP here is ComfyUI's own CLIP object with the family's own tokenizer class and no text-encoder weights (a
7B-24B LLM cannot be built here): the indices are checked by decoding the tokens at them, mapped back through
what ComfyUI drops (Qwen-Image's system prompt) or the model pads (Flux.2 dev's left padding to 512), and those
two rules are checked against ComfyUI's own code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

PROMPTS = [
    "a photo of a cat to the left of a dog",
    "A giraffe above a toaster, in a sunny kitchen",
    "the dog on the left of the cat and a dog behind the sofa",
    "a hippopotamus below a chandelier " + "with many small details, " * 60,  # past 512 tokens
]


def _clip(tokenizer):
    import comfy.sd

    clip = comfy.sd.CLIP(no_init=True)
    clip.tokenizer, clip.tokenizer_options = tokenizer, {}
    return clip


def _family_tokenizer(name: str):
    """ComfyUI's tokenizer class of a family, or skip where this ComfyUI lacks it."""
    import importlib

    where = {"qwen_image": ("comfy.text_encoders.qwen_image", "QwenImageTokenizer"),
             "z_image": ("comfy.text_encoders.z_image", "ZImageTokenizer"),
             "klein": ("comfy.text_encoders.flux", "KleinTokenizer"),
             "klein9b": ("comfy.text_encoders.flux", "KleinTokenizer8B"),
             "chroma": ("comfy.text_encoders.pixart_t5", "PixArtTokenizer"),
             "flux2": ("comfy.text_encoders.flux", "Flux2Tokenizer")}[name]
    try:
        cls = getattr(importlib.import_module(where[0]), where[1])
    except (ImportError, AttributeError):
        pytest.skip(f"this ComfyUI has no {where[1]} ({name}; ComfyUI 0.33+)")
    if name == "flux2":
        return cls(tokenizer_data={"tekken_model": tekken_blob()})
    return cls()


def tekken_blob() -> bytes:
    """A Tekken tokenizer file as Flux.2 dev's text encoder carries it: mistral_common's tekken_240911.json
    (the Mistral-3 vocabulary, 131072 tokens) with its 1000 special-token ranks named."""
    out = Path.home() / ".cache" / "pos_spatial_tests" / "tekken_240911_named.json"
    if not out.exists():
        wheels = out.parent / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        found = sorted(wheels.glob("mistral_common-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d",
                            str(wheels), "mistral_common==1.12.0"], check=True, capture_output=True)
            found = sorted(wheels.glob("mistral_common-*.whl"))
        with zipfile.ZipFile(found[-1]) as z:
            data = json.loads(z.read("mistral_common/data/tekken_240911.json"))
        names = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                 "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]",
                 "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]"]
        n = data["config"]["default_num_special_tokens"]
        data["special_tokens"] = [{"rank": i, "token_str": names[i] if i < len(names) else f"<SPECIAL_{i}>",
                                   "is_control": True} for i in range(n)]
        out.write_text(json.dumps(data))
    return out.read_bytes()


def _key(clip) -> str:
    return next(iter(clip.tokenize("a")))


def _full(clip, prompt) -> list[int]:
    from pos_spatial_pack.nodes.relations import _ids

    return _ids(clip.tokenize(prompt)[_key(clip)])


def _to_full(clip, prompt, i: int) -> int:
    """A model-text index back to the templated token list (undo the drop / the padding)."""
    from pos_spatial_pack.nodes.relations import FLUX2_TEXT, qwen_image_dropped

    key, full = _key(clip), _full(clip, prompt)
    if key == "qwen25_7b":
        return i + qwen_image_dropped(full)
    if key == "mistral3_24b" and len(full) < FLUX2_TEXT:
        return i - (FLUX2_TEXT - len(full))
    return i


def _decode(clip, ids) -> str:
    key = _key(clip)
    inner = getattr(clip.tokenizer, key, None) or getattr(clip.tokenizer, f"clip_{key}")
    tok = inner.tokenizer
    if hasattr(tok, "decode"):
        return tok.decode(ids)
    raise AssertionError("no decode")


@pytest.mark.parametrize("family", ["qwen_image", "z_image", "klein", "klein9b", "flux2", "chroma"])
def test_relation_tokens_spell_the_nouns_in_the_text_the_model_reads(host, family):
    from pos_spatial_pack.nodes.relations import clip_layout
    from pos_spatial_pack.pos_core.relations import parse
    from pos_spatial_pack.pos_core.tokens import bind_relations

    clip = _clip(_family_tokenizer(family))
    layout = clip_layout(clip)
    for prompt in PROMPTS:
        bound = bind_relations(prompt, parse(prompt), layout)
        assert bound.relations, prompt
        full = _full(clip, prompt)
        for r in bound.relations:
            for noun, idx in ((r.subject, r.subject_tokens), (r.object, r.object_tokens)):
                assert idx and list(idx) == list(range(idx[0], idx[0] + len(idx))), (noun, idx)
                ids = [full[_to_full(clip, prompt, i)] for i in idx]
                word = _decode(clip, ids).strip().lower()
                assert word == noun.split()[-1].lower(), (family, prompt[:40], noun, idx, word)


def test_the_same_word_twice_resolves_by_position(host):
    from pos_spatial_pack.nodes.relations import clip_layout
    from pos_spatial_pack.pos_core.relations import parse
    from pos_spatial_pack.pos_core.tokens import bind_relations

    clip = _clip(_family_tokenizer("qwen_image"))
    prompt = PROMPTS[2]
    rels = bind_relations(prompt, parse(prompt), clip_layout(clip)).relations
    dogs = [r.subject_tokens for r in rels if r.subject == "dog"]
    assert len(dogs) == 2 and dogs[0] != dogs[1] and dogs[0][0] < dogs[1][0]


def test_qwen_image_first_prompt_token_after_the_dropped_system_prompt(host):
    """Qwen-Image: ComfyUI drops 34 template tokens, so the prompt starts at text index 0 (no leading space
    token on the first word); a relation on the first word is found there."""
    from pos_spatial_pack.nodes.relations import clip_layout, qwen_image_dropped
    from pos_spatial_pack.pos_core.relations import parse
    from pos_spatial_pack.pos_core.tokens import bind_relations

    clip = _clip(_family_tokenizer("qwen_image"))
    assert qwen_image_dropped(_full(clip, "a cat left of a dog")) == 34
    rel = bind_relations("cat left of a dog", parse("cat left of a dog"), clip_layout(clip)).relations[0]
    assert rel.subject_tokens == (0,)


def test_qwen_image_drop_is_comfyuis(host, monkeypatch):
    """The drop rule equals what ComfyUI's QwenImageTEModel.encode_token_weights cuts, run on the real token
    pairs with the 7B encoder's output stood in by each token's position."""
    from comfy import sd1_clip
    from comfy.text_encoders.qwen_image import QwenImageTEModel
    from pos_spatial_pack.nodes.relations import qwen_image_dropped

    clip = _clip(_family_tokenizer("qwen_image"))

    def positions(self, pairs):
        n = len(pairs["qwen25_7b"][0])
        return torch.arange(n, dtype=torch.float32).reshape(1, n, 1), None, {"attention_mask": torch.ones(1, n)}

    monkeypatch.setattr(sd1_clip.SD1ClipModel, "encode_token_weights", positions)
    te = object.__new__(QwenImageTEModel)
    for prompt in PROMPTS[:3] + ["<|im_start|>user\nraw chat<|im_end|>"]:
        pairs = clip.tokenize(prompt)
        out, _, _ = QwenImageTEModel.encode_token_weights(te, pairs)
        assert int(out[0, 0, 0]) == qwen_image_dropped(_full(clip, prompt)), prompt


def test_flux2_dev_left_pad_is_comfyuis(host):
    """Flux.2 dev's text is left-padded with zeros to 512 by ComfyUI's model_base.Flux2 (what the relations'
    indices are shifted by), and the fingerprint still finds the prompt after the padding."""
    import dit_fixtures
    from pos_spatial_pack.nodes.conds import carries, fingerprint
    from pos_spatial_pack.nodes.relations import FLUX2_TEXT

    with torch.inference_mode():
        m = dit_fixtures.flux2()
        text = torch.randn(1, 40, 64)
        out = m.model.extra_conds(cross_attn=text)["c_crossattn"].cond
    assert out.shape[1] == FLUX2_TEXT and torch.equal(out[0, -40:], text[0]) and out[0, :-40].abs().max() == 0
    assert carries(fingerprint([[text, {}]]), out)
    assert not carries(fingerprint([[torch.randn(1, 40, 64), {}]]), out)


def test_llm_encoders_are_known_and_others_refused(host):
    from pos_spatial_pack.nodes.relations import LLM_KEYS, clip_layout

    for family in ("qwen_image", "chroma"):
        assert clip_layout(_clip(_family_tokenizer(family)))
    import comfy.text_encoders.aura_t5 as aura_t5  # AuraFlow's Pile-T5: no family of the pack reads it

    with pytest.raises(ValueError, match="not a text encoder PoS relations know.*Qwen-Image"):
        clip_layout(_clip(aura_t5.AuraT5Tokenizer()))
    assert set(LLM_KEYS) == {"qwen25_7b", "qwen3_4b", "qwen3_8b", "mistral3_24b"}
