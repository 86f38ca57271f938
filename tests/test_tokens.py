import pytest

from pos_core.relations import parse
from pos_core.tokens import (CHUNK, END, START, comfy_chunks, content_tokens, parse_weights,
                             relation_token_indices, tokenize_fn, word_token_indices)


@pytest.fixture(scope="module")
def tz(clip_tokenizer):
    return tokenize_fn(clip_tokenizer)


@pytest.fixture(scope="module")
def encode(clip_tokenizer):
    return lambda text: clip_tokenizer(text)["input_ids"][1:-1]


def flat(chunks):
    return [t for c in chunks for t in c]


def tokens_at(tz, prompt, idx):
    f = flat(tz(prompt))
    return [f[i] for i in idx]


def test_plain_prompt_layout_matches_the_tokenizer(clip_tokenizer, tz):
    text = "a photo of a cat to the left of a dog"
    ids = clip_tokenizer(text)["input_ids"]
    chunks = tz(text)
    assert len(chunks) == 1 and len(chunks[0]) == CHUNK
    assert chunks[0][: len(ids)] == ids
    assert chunks[0][len(ids):] == [END] * (CHUNK - len(ids))


def test_simple_relation_indices(tz, encode):
    p = "a cat to the left of a dog"
    (rel,) = parse(p)
    s, o = relation_token_indices(p, rel, tz)
    assert s == [2] and o == [8]  # start token at 0, "a" at 1
    assert tokens_at(tz, p, s) == encode("cat") and tokens_at(tz, p, o) == encode("dog")


def test_weight_syntax(tz, encode):
    p = "a (red car:1.2) to the left of a ((blue truck)), 4k"
    assert parse_weights(p)[1] == ("red car", 1.2)
    (rel,) = parse(p)
    s, o = relation_token_indices(p, rel, tz)
    assert tokens_at(tz, p, s) == encode("car")
    assert tokens_at(tz, p, o) == encode("truck")
    assert s[0] == 3 and o[0] == 10  # <start> a red car to the left of a blue truck


def test_same_word_twice_is_picked_by_span(tz, encode):
    p = "a dog to the left of a big dog"
    (rel,) = parse(p)
    s, o = relation_token_indices(p, rel, tz)
    assert tokens_at(tz, p, s) == tokens_at(tz, p, o) == encode("dog")
    assert s == [2] and o == [9]
    p2 = "a dog above a cat and a cat left of a dog"
    r1, r2 = parse(p2)
    s1, o1 = relation_token_indices(p2, r1, tz)
    s2, o2 = relation_token_indices(p2, r2, tz)
    assert (s1, o1, s2, o2) == ([2], [5], [8], [12])


def test_multi_token_and_compound_nouns(tz, encode):
    p = "a teddy bear to the left of a placemat"
    (rel,) = parse(p)
    s, o = relation_token_indices(p, rel, tz)
    assert tokens_at(tz, p, s) == encode("teddy bear") and len(s) == 2
    assert len(encode("placemat")) >= 2, "placemat should be a multi-token word in CLIP's BPE"
    assert tokens_at(tz, p, o) == encode("placemat") and o == list(range(o[0], o[0] + len(o)))


def test_prompt_longer_than_one_chunk(tz, encode):
    filler = ", ".join(["highly detailed masterpiece"] * 20)
    p = f"{filler}, a cat to the left of a dog"
    chunks = tz(p)
    assert len(chunks) >= 2 and all(len(c) == CHUNK for c in chunks)
    assert all(c[0] == START for c in chunks)
    (rel,) = parse(p)
    s, o = relation_token_indices(p, rel, tz)
    assert s[0] > CHUNK and o[0] > s[0]
    assert tokens_at(tz, p, s) == encode("cat") and tokens_at(tz, p, o) == encode("dog")
    assert s[0] % CHUNK != 0 and o[0] % CHUNK != 0


def test_small_weighted_group_moves_whole_to_next_chunk(tz, encode):
    words = " ".join(["cat"] * 74)  # fills the first chunk up to 75 tokens
    p = f"{words} (tiny dog:1.1)"
    chunks = tz(p)
    assert chunks[0][75] == END and chunks[1][1:3] == encode("tiny dog")
    idx = word_token_indices(p, (p.index("dog"), p.index("dog") + 3), "dog", tz)
    assert idx == [CHUNK + 2]


def test_sdxl_g_padding_gives_same_indices(clip_tokenizer, tz):
    tz_g = tokenize_fn(clip_tokenizer, pad=0)
    p = "a red car below a bridge, " + "sharp focus, " * 30
    (rel,) = parse(p)
    assert relation_token_indices(p, rel, tz) == relation_token_indices(p, rel, tz_g)
    assert tz_g(p)[-1][-1] == 0


def test_content_tokens_skip_special():
    chunks = [[START, 5, 6, END] + [END] * 73, [START, 7, END] + [0] * 74]
    assert content_tokens(chunks) == [(5, 1), (6, 2), (7, CHUNK + 1)]


def test_missing_word_is_a_clear_error(tz):
    with pytest.raises(ValueError, match="could not find"):
        word_token_indices("a cat", (2, 5), "dog", tz)


def test_comfy_chunks_escapes(encode):
    chunks = comfy_chunks(r"a \(cat\) left of a dog", encode)
    assert encode("a (cat) left of a dog") == [t for t in chunks[0][1:] if t != END]
