"""Host-free: token indices through an LLM text encoder's layout (pos_core.tokens.LLMStream), with a toy
byte-level-BPE-like encoder: the text is split GPT-2 style (a word carries its leading space), then each
piece is one id, except long words, which split into pieces of 4 characters (multi-token words)."""

import re

import pytest

from pos_core.relations import parse
from pos_core.tokens import LLMStream, bind_relations, find_run, span_token_indices

VOCAB: dict[str, int] = {}
SPLIT = re.compile(r"[^\r\n\w]?[a-zA-Z]+|\d| ?[^\s\w]+|\s+(?!\S)|\s+")


def encode(text: str) -> list[int]:
    ids = []
    for piece in SPLIT.findall(text):
        parts = [piece[i:i + 4] for i in range(0, len(piece), 4)] if len(piece) > 8 else [piece]
        ids += [VOCAB.setdefault(p, 1000 + len(VOCAB)) for p in parts]
    return ids


def templated(prompt: str) -> list[int]:
    return [1, 2] + encode(prompt) + [3, 4]  # two template tokens before, two after


def stream(drop: int = 0, pad_to: int = 0) -> LLMStream:
    def place(prompt):
        full, raw = templated(prompt), encode(prompt)
        first, length = find_run(full, raw), len(full)
        first, length = first - drop, length - drop
        if pad_to and length < pad_to:
            first, length = first + pad_to - length, pad_to
        return first, length

    return LLMStream(encode, place)


def decode_at(prompt, idx, drop=0, pad_to=0):
    full = templated(prompt)[drop:]
    if pad_to and len(full) < pad_to:
        full = [0] * (pad_to - len(full)) + full
    inv = {v: k for k, v in VOCAB.items()}
    return "".join(inv[full[i]] for i in idx).strip()


@pytest.mark.parametrize("drop,pad_to", [(0, 0), (2, 0), (0, 64)])
def test_relation_nouns_are_found_after_the_template(drop, pad_to):
    prompt = "a photo of a cat to the left of a hippopotamus"
    rel = bind_relations(prompt, parse(prompt), [stream(drop, pad_to)]).relations[0]
    assert decode_at(prompt, rel.subject_tokens, drop, pad_to) == "cat"
    assert decode_at(prompt, rel.object_tokens, drop, pad_to) == "hippopotamus"
    assert len(rel.object_tokens) == 4  # " hippopotamus": 4 pieces; a multi-token word keeps them all


def test_first_word_and_repeated_word():
    prompt = "dog left of a cat, and a dog behind a dog"
    rels = bind_relations(prompt, parse(prompt), [stream()]).relations
    subjects = [r.subject_tokens for r in rels if r.subject == "dog"]
    assert subjects[0] == (2,)  # the first word: right after the 2 template tokens, no leading space
    assert len(set(subjects)) == len(subjects)


def test_span_token_indices_refuses_a_word_merged_with_its_neighbour():
    prompt = "a red(cat) left of a dog"
    with pytest.raises(ValueError, match="could not find the tokens of 'cat'"):
        span_token_indices(prompt, (prompt.index("cat"), prompt.index("cat") + 3), encode)


def test_find_run():
    assert find_run([5, 1, 2, 3, 1, 2], [1, 2]) == 1 and find_run([5, 1, 2, 3, 1, 2], [1, 2], after=2) == 4
    assert find_run([1, 2], [3]) == -1
