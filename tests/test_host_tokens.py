"""Host test: pos_core's token layout equals the one ComfyUI's own SD tokenizers build."""

import pytest

from pos_core.relations import parse
from pos_core.tokens import relation_token_indices, tokenize_fn

PROMPTS = [
    "a cat to the left of a dog",
    "a (red car:1.2) on the left side of a ((blue truck)), 4k, photorealistic",
    "a dog to the left of a big dog",
    r"a \(weird\) teddy bear sitting under a wine glass",
    ", ".join(["highly detailed masterpiece"] * 20) + ", a vase in front of a clock",
    " ".join(["cat"] * 74) + " (tiny dog:1.1) above a [bird]",
    "(" + " ".join(["very"] * 40) + " big:1.3) cat left of a (" + " ".join(["small"] * 50) + " dog:0.8)",
]


@pytest.fixture(scope="module")
def comfy_tokenizers(comfyui_path):
    from comfy import sd1_clip, sdxl_clip
    from comfy.text_encoders import sd2_clip

    return {
        "sd1": sd1_clip.SD1Tokenizer(embedding_directory=None),
        "sd2": sd2_clip.SD2Tokenizer(embedding_directory=None),
        "sdxl": sdxl_clip.SDXLTokenizer(embedding_directory=None),
    }


def comfy_tokenize(tokenizer, key):
    def tok(text):
        return [[t for t, *_ in chunk] for chunk in tokenizer.tokenize_with_weights(text)[key]]
    return tok


@pytest.mark.parametrize("prompt", PROMPTS)
def test_chunks_and_indices_match_comfyui(prompt, comfy_tokenizers, clip_tokenizer):
    ours = tokenize_fn(clip_tokenizer)
    ours_g = tokenize_fn(clip_tokenizer, pad=0)
    checks = [("sd1", "l", ours), ("sd2", "h", ours_g), ("sdxl", "l", ours), ("sdxl", "g", ours_g)]
    rels = parse(prompt)
    assert rels, prompt
    for family, key, mine in checks:
        theirs = comfy_tokenize(comfy_tokenizers[family], key)
        assert mine(prompt) == theirs(prompt), (family, key)
        for rel in rels:
            assert relation_token_indices(prompt, rel, theirs) == relation_token_indices(prompt, rel, mine)
