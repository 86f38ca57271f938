"""Host test: token positions for Flux.1 (T5 only) and SD3 / SD3.5 (CLIP chunks of 77, then T5) equal the
layout ComfyUI's own tokenizers build (their vocabularies ship inside ComfyUI)."""

from __future__ import annotations

import pytest

from pos_core.relations import parse
from pos_core.tokens import (CHUNK, FLUX_T5_MIN, SD3_T5_MIN, clip_stream, relation_token_indices, t5_stream,
                             t5_tokenize_fn)

PROMPTS = [
    "a cat to the left of a dog",
    "a photo of a (red car:1.2) on the left side of a ((blue truck)), 4k, photorealistic",
    "a dog to the left of a big dog",
    "a hotdog above a teddy bear",
    r"a \(weird\) teddy bear sitting under a wine glass",
    ", ".join(["highly detailed masterpiece"] * 30) + ", a vase in front of a clock",  # two CLIP chunks
    " ".join(["cat"] * 300) + " (tiny dog:1.1) above a bird",  # T5 longer than 256, CLIP in 5 chunks
]


class Tokenizes:
    """The part of a loaded CLIP the relation nodes use (tokenize, cond_stage_model), over ComfyUI's tokenizer."""

    def __init__(self, tokenizer, **encoders):
        self.tokenizer = tokenizer
        self.cond_stage_model = type("Encoders", (), encoders)()

    def tokenize(self, text, return_word_ids=False):
        return self.tokenizer.tokenize_with_weights(text, return_word_ids)


@pytest.fixture(scope="module")
def comfy_side(comfyui_path):
    from comfy.text_encoders.flux import FluxTokenizer
    from comfy.text_encoders.sd3_clip import SD3Tokenizer
    from transformers import T5TokenizerFast

    t5 = T5TokenizerFast.from_pretrained(str(comfyui_path / "comfy" / "text_encoders" / "t5_tokenizer"))
    return {"flux": FluxTokenizer(), "sd3": SD3Tokenizer(), "t5": t5}


def ids(tokenizer, text, key):
    return [[t for t, *_ in c] for c in tokenizer.tokenize_with_weights(text)[key]]


def layouts(comfy_side):
    from pos_spatial_pack.nodes.relations import clip_layout

    return {"flux": clip_layout(Tokenizes(comfy_side["flux"])),
            "sd3": clip_layout(Tokenizes(comfy_side["sd3"])),
            "sd3_no_t5": clip_layout(Tokenizes(comfy_side["sd3"], t5xxl=None)),
            "sd3_t5_only": clip_layout(Tokenizes(comfy_side["sd3"], clip_l=None, clip_g=None))}


@pytest.mark.parametrize("prompt", PROMPTS)
def test_t5_layout_matches_comfyui(prompt, comfy_side, host):
    for family, min_length in (("flux", FLUX_T5_MIN), ("sd3", SD3_T5_MIN)):
        mine = t5_tokenize_fn(comfy_side["t5"], min_length)(prompt)
        assert mine == ids(comfy_side[family], prompt, "t5xxl"), family
        assert len(mine) == 1 and len(mine[0]) >= min_length


@pytest.mark.parametrize("prompt", PROMPTS)
def test_joint_indices_point_at_the_nouns(prompt, comfy_side, host):
    """Flux: T5 index = context index; SD3: CLIP chunks first, T5 after 77 x chunks."""
    rels = parse(prompt)
    assert rels, prompt
    t5 = comfy_side["t5"]
    lay = layouts(comfy_side)
    ours_flux = [t5_stream(t5_tokenize_fn(t5, FLUX_T5_MIN))]
    for rel in rels:
        for which, span in (("subject", rel.subject_span), ("object", rel.object_span)):
            got = relation_token_indices(prompt, rel, lay["flux"])
            assert got == relation_token_indices(prompt, rel, ours_flux)
        flux_s, flux_o = relation_token_indices(prompt, rel, lay["flux"])
        sd3_s, sd3_o = relation_token_indices(prompt, rel, lay["sd3"])
        clip_chunks = ids(comfy_side["sd3"], prompt, "l")
        t5_flat = ids(comfy_side["flux"], prompt, "t5xxl")[0]
        context = [t for c in clip_chunks for t in c] + ids(comfy_side["sd3"], prompt, "t5xxl")[0]
        offset = CHUNK * len(clip_chunks)
        for flux_idx, sd3_idx, noun in ((flux_s, sd3_s, rel.subject), (flux_o, sd3_o, rel.object)):
            head = noun.split()[-1]
            word = t5(head)["input_ids"][:-1]
            assert [t5_flat[i] for i in flux_idx][-len(word):] == word, (noun, flux_idx)
            t5_part = [i for i in sd3_idx if i >= offset]
            clip_part = [i for i in sd3_idx if i < offset]
            assert [i - offset for i in t5_part] == flux_idx  # same T5 positions, shifted by the CLIP chunks
            assert [context[i] for i in t5_part] == [t5_flat[i] for i in flux_idx]
            clip_word = comfy_side["sd3"].clip_l.tokenizer(head)["input_ids"][1:-1]
            assert [context[i] for i in clip_part][-len(clip_word):] == clip_word
        assert relation_token_indices(prompt, rel, lay["sd3_no_t5"]) == (
            [i for i in sd3_s if i < offset], [i for i in sd3_o if i < offset])
        assert relation_token_indices(prompt, rel, lay["sd3_t5_only"]) == (flux_s, flux_o)


def test_repeated_word_resolves_by_position(comfy_side, host):
    prompt = "a dog to the left of a big dog"
    (rel,) = parse(prompt)
    s, o = relation_token_indices(prompt, rel, layouts(comfy_side)["flux"])
    t5 = ids(comfy_side["flux"], prompt, "t5xxl")[0]
    assert [t5[i] for i in s] == [t5[i] for i in o] and s[0] < o[0]


def test_unknown_text_encoder_is_named(comfy_side, host):
    from pos_spatial_pack.nodes.relations import clip_layout

    class Other:
        def tokenize(self, text):
            return {"llama": [[1, 2]], "t5xxl": [[3, 1]]}

    with pytest.raises(ValueError, match="Flux.1's .*SD3"):
        clip_layout(Other())
