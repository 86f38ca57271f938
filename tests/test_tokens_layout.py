"""Host-free: T5 layout (Flux / SD3) and multi-stream layouts, with a toy word-level encoder."""

from pos_core.relations import parse
from pos_core.tokens import (CHUNK, T5_END, T5_PAD, Stream, comfy_chunks, relation_token_indices, t5_chunks,
                             word_token_indices)

VOCAB: dict[str, int] = {}


def encode(text: str) -> list[int]:
    """One id per word (punctuation kept on the word), ids above CLIP's specials and T5's."""
    return [VOCAB.setdefault(w.strip(",").lower(), 100 + len(VOCAB)) for w in text.split()]


def t5(text):
    return t5_chunks(text, encode, 256)


def clip(text):
    return comfy_chunks(text, encode)


def test_t5_stream_is_unchunked_ended_and_padded():
    (ids,) = t5("a cat to the left of a dog")
    assert len(ids) == 256 and ids[8] == T5_END and set(ids[9:]) == {T5_PAD}
    (long,) = t5(" ".join(["cat"] * 300))
    assert len(long) == 301 and long[-1] == T5_END  # longer prompts make longer sequences
    assert t5(r"a (red car:1.2) and \(x\)")[0][:6] == encode("a red car and (x)") + [T5_END]


def test_t5_indices_and_repeated_words():
    p = "a dog to the left of a big dog"
    (rel,) = parse(p)
    flux = [Stream(t5, None, T5_END)]
    s, o = relation_token_indices(p, rel, flux)
    assert s == [1] and o == [8]  # no start token in T5


def test_sd3_layout_puts_t5_after_the_clip_chunks():
    sd3 = [Stream(clip), Stream(t5, None, T5_END)]
    p = "a cat to the left of a dog"
    (rel,) = parse(p)
    s, o = relation_token_indices(p, rel, sd3)
    assert s == [2, CHUNK + 1] and o == [8, CHUNK + 7]
    long = " ".join(["word"] * 80) + ", a cat to the left of a dog"  # two CLIP chunks
    (rel,) = parse(long)
    s, _ = relation_token_indices(long, rel, sd3)
    # one 88-token segment split over two CLIP chunks (75 + 13): "cat" is token 81 -> chunk 1, position 7
    assert len(clip(long)) == 2 and s == [CHUNK + 7, 2 * CHUNK + 81]
    assert word_token_indices(long, rel.subject_span, "cat", [Stream(t5, None, T5_END)]) == [81]
