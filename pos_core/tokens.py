"""Text-token indices of the objects a relation names, laid out as ComfyUI lays out its context.

ComfyUI splits a prompt into weighted segments ("(red car:1.2)"), BPE-encodes each, and packs
them into chunks of 77 (start token, up to 75 tokens, end token, padding). The index of a token
in the conditioning is chunk * 77 + position. SD1 (CLIP-L), SD2 (OpenCLIP-H, same BPE) and
SDXL (G and L share positions) all use this layout.

DiT contexts concatenate several encoders' streams along the sequence (a `Layout`): Flux.1 has
T5-XXL only (one unchunked stream, no start token, `</s>`, padded with 0 to 256); SD3/SD3.5 has the
CLIP-L/G chunks of 77 followed by T5 (padded to 77), so T5 index i sits at 77 * chunks + i. An
object's tokens are then its tokens in every stream of the layout.

Which tokens stand for an object: the tokens of its noun (`relations.noun_words`): the head noun,
or every word of a known compound ("teddy bear"); a noun split into several BPE tokens keeps them
all, and guidance averages their maps.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .relations import Relation, clean_prompt, noun_span

CHUNK = 77
START, END = 49406, 49407
T5_END, T5_PAD = 1, 0  # T5's </s> and <pad>; T5 has no start token
FLUX_T5_MIN, SD3_T5_MIN = 256, 77  # ComfyUI pads T5 to these lengths (Flux, SD3)
MAX_WORD_LENGTH = 8  # ComfyUI keeps a group of fewer tokens in one chunk

Encode = Callable[[str], list[int]]  # BPE ids of a text, without start/end tokens
Tokenize = Callable[[str], list[list[int]]]  # prompt -> chunks of 77 ids, ComfyUI's layout


def parse_weights(text: str, weight: float = 1.0) -> list[tuple[str, float]]:
    """Split prompt text into (segment, weight) the way ComfyUI reads "(a:1.2)" and "((a))"."""
    parts, cur, depth = [], "", 0
    for ch in text:
        if ch == "(":
            if depth == 0:
                if cur:
                    parts.append(cur)
                cur = "("
            else:
                cur += ch
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                parts.append(cur + ")")
                cur = ""
            else:
                cur += ch
        else:
            cur += ch
    if cur:
        parts.append(cur)
    out: list[tuple[str, float]] = []
    for p in parts:
        if len(p) >= 2 and p[0] == "(" and p[-1] == ")":
            inner, w = p[1:-1], weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    w, inner = float(inner[colon + 1:]), inner[:colon]
                except ValueError:
                    pass
            out += parse_weights(inner, w)
        else:
            out.append((p, weight))
    return out


def comfy_chunks(text: str, encode: Encode, start: int = START, end: int = END, pad: int = END) -> list[list[int]]:
    """Token chunks of a prompt as ComfyUI's SD tokenizer builds them (embeddings not expanded)."""
    text = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    groups = []
    for seg, _ in parse_weights(text):
        seg = seg.replace("\0\1", ")").replace("\0\2", "(")
        if seg:
            groups.append(list(encode(seg)))
    chunks, batch = [], [start]
    chunks.append(batch)
    for group in groups:
        large = len(group) >= MAX_WORD_LENGTH
        while group:
            if len(group) + len(batch) > CHUNK - 1:
                room = CHUNK - len(batch) - 1
                if large:
                    batch.extend(group[:room])
                    group = group[room:]
                    batch.append(end)
                else:
                    batch.append(end)
                    batch.extend([pad] * room)
                batch = [start]
                chunks.append(batch)
            else:
                batch.extend(group)
                group = []
    batch.append(end)
    batch.extend([pad] * (CHUNK - len(batch)))
    return chunks


def t5_chunks(text: str, encode: Encode, min_length: int = FLUX_T5_MIN) -> list[list[int]]:
    """T5 tokens of a prompt as ComfyUI's T5-XXL tokenizer lays them out: one unchunked stream of the
    weighted segments' ids, then </s>, padded with 0 to `min_length` (256 for Flux, 77 for SD3)."""
    text = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    ids: list[int] = []
    for seg, _ in parse_weights(text):
        seg = seg.replace("\0\1", ")").replace("\0\2", "(")
        if seg:
            ids += list(encode(seg))
    ids.append(T5_END)
    return [ids + [T5_PAD] * max(0, min_length - len(ids))]


def content_tokens(chunks: Sequence[Sequence[int]], start: int | None = START, end: int = END) -> list[tuple[int, int]]:
    """(token id, context index) of every prompt token: start, end and padding left out. A chunk's
    first index is the summed length of the chunks before it (77 each for CLIP)."""
    out, base = [], 0
    for chunk in chunks:
        for p, tok in enumerate(chunk):
            if p == 0 and start is not None and tok == start:
                continue
            if tok == end:
                break
            out.append((int(tok), base + p))
        base += len(chunk)
    return out


def _matches(stream: list[tuple[int, int]], word: list[int]) -> list[list[int]]:
    n = len(word)
    ids = [t for t, _ in stream]
    return [[i for _, i in stream[k:k + n]] for k in range(len(ids) - n + 1) if ids[k:k + n] == word]


def word_token_indices(prompt: str, span: tuple[int, int], words: str, tokenize: Tokenize | Sequence["Stream"],
                       start: int | None = START, end: int = END) -> list[int]:
    """Context indices of the tokens of `words`, the occurrence of them that sits at `span`.

    The occurrence is counted by tokenizing the prompt up to the span, so the same word twice
    ("a dog left of a big dog") resolves by position, and weights or chunking cannot shift it.
    `tokenize` may be a `Layout` (several streams): then the indices in every stream, offset by
    the length of the streams before it.
    """
    if not callable(tokenize):
        return _layout_indices(prompt, span, words, tokenize)
    word = [t for t, _ in content_tokens(tokenize(words), start, end)]
    if not word:
        raise ValueError(f"{words!r} has no tokens")
    found = _matches(content_tokens(tokenize(prompt), start, end), word)
    before = len(_matches(content_tokens(tokenize(prompt[:span[0]]), start, end), word))
    if before >= len(found):
        raise ValueError(f"could not find the tokens of {words!r} in the prompt {prompt!r}")
    return found[before]


@dataclass(frozen=True)
class Stream:
    """One text encoder's part of a model's context: its tokenizer in ComfyUI's layout and special ids."""

    tokenize: Tokenize
    start: int | None = START
    end: int = END


Layout = Sequence["Stream | LLMStream"]  # streams concatenated along the context's sequence, in order


def clip_stream(tokenize: Tokenize) -> Stream:
    """CLIP (L, G or H) chunks of 77 with start and end tokens."""
    return Stream(tokenize, START, END)


def t5_stream(tokenize: Tokenize) -> Stream:
    """T5-XXL: one unchunked stream, no start token, </s> ends it."""
    return Stream(tokenize, None, T5_END)


@dataclass(frozen=True)
class LLMStream:
    """An LLM text encoder's part of the context (Qwen, Mistral: byte-level BPE that splits words before
    merging, a word's token carrying its leading space). `encode` gives a text's ids without the chat
    template; `place` gives, for a prompt, where its first token sits in the text the model attends to
    (after the template, less what ComfyUI drops, plus any padding the model adds) and that text's length."""

    encode: Encode
    place: Callable[[str], tuple[int, int]]


def span_token_indices(prompt: str, span: tuple[int, int], encode: Encode) -> list[int]:
    """Indices in encode(prompt) of the tokens that spell prompt[span[0]:span[1]].

    A pre-tokenizing BPE encodes a prefix that ends at a word boundary as the same tokens the whole prompt
    starts with, so the span's tokens run from len(encode(text before it, trailing space dropped: the
    space belongs to the word's token)) to len(encode(text up to its end)); checked against the whole."""
    whole = list(encode(prompt))
    before = prompt[:span[0]].rstrip()
    a = len(encode(before)) if before else 0
    upto = list(encode(prompt[:span[1]]))
    b = len(upto)
    if b <= a or whole[:b] != upto or (a and whole[:a] != list(encode(before))):
        raise ValueError(f"could not find the tokens of {prompt[span[0]:span[1]]!r} in the prompt {prompt!r} "
                         "(the text encoder merges them with their neighbours; put a space or a comma around them)")
    return list(range(a, b))


def find_run(seq: Sequence[int], part: Sequence[int], after: int = 0) -> int:
    """First index >= `after` where `part` occurs in `seq` as a contiguous run; -1 if it does not."""
    n = len(part)
    for i in range(after, len(seq) - n + 1):
        if list(seq[i:i + n]) == list(part):
            return i
    return -1


def _layout_indices(prompt: str, span: tuple[int, int], words: str, layout: Layout) -> list[int]:
    if not layout:
        raise ValueError("the text layout has no token streams")
    out, offset = [], 0
    for s in layout:
        if isinstance(s, LLMStream):
            first, length = s.place(prompt)
            out += [offset + first + i for i in span_token_indices(prompt, span, s.encode)]
            offset += length
            continue
        out += [offset + i for i in word_token_indices(prompt, span, words, s.tokenize, s.start, s.end)]
        offset += sum(len(c) for c in s.tokenize(prompt))
    return out


def noun_token_indices(prompt: str, span: tuple[int, int], tokenize: Tokenize | Layout) -> list[int]:
    """Token indices of the noun of the phrase at `span` (see the module docstring)."""
    start, end = noun_span(prompt, span)
    nouns = " ".join(clean_prompt(prompt[start:end]).lower().split())
    return word_token_indices(prompt, (start, end), nouns, tokenize)


def relation_token_indices(prompt: str, rel: Relation, tokenize: Tokenize | Layout) -> tuple[list[int], list[int]]:
    """(subject indices, object indices) of a parsed relation in the text context (CLIP, or a Layout)."""
    return (noun_token_indices(prompt, rel.subject_span, tokenize),
            noun_token_indices(prompt, rel.object_span, tokenize))


def clip_tokenizer(path: str):
    """A transformers CLIPTokenizer from a folder with vocab.json + merges.txt (ComfyUI's
    sd1_tokenizer, a hub snapshot) or from CLIP's bpe_simple_vocab_16e6.txt.gz (open_clip ships it)."""
    from transformers import CLIPTokenizer

    folder = path
    if not os.path.isdir(path):
        folder = path + ".hf"
        if not os.path.exists(os.path.join(folder, "merges.txt")):
            _bpe_to_hf(path, folder)
    return CLIPTokenizer.from_pretrained(folder)


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes of byte-level BPE (GPT-2, CLIP), in vocabulary order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(rest))]


def _bpe_to_hf(bpe_gz: str, folder: str) -> None:
    """Write vocab.json and merges.txt equivalent to CLIP's own vocabulary built from its BPE file."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(_byte_alphabet())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def tokenize_fn(tokenizer, pad: int = END) -> Tokenize:
    """A `Tokenize` from a transformers CLIP tokenizer; pad=0 for SD2 / SDXL's G encoder."""

    def encode(text: str) -> list[int]:
        return tokenizer(text)["input_ids"][1:-1]

    return lambda text: comfy_chunks(text, encode, pad=pad)


def t5_tokenize_fn(tokenizer, min_length: int = FLUX_T5_MIN) -> Tokenize:
    """A `Tokenize` from a transformers T5 tokenizer (ComfyUI's t5_tokenizer folder), ComfyUI's layout."""

    def encode(text: str) -> list[int]:
        return tokenizer(text)["input_ids"][:-1]

    return lambda text: t5_chunks(text, encode, min_length)


@dataclass(frozen=True)
class TokenRelation:
    """A relation with the CLIP context indices of its subject's and object's noun tokens."""

    subject: str
    relation: str
    object: str
    subject_tokens: tuple[int, ...]
    object_tokens: tuple[int, ...]

    def to_json(self) -> dict:
        return {"subject": self.subject, "relation": self.relation, "object": self.object,
                "subject_tokens": list(self.subject_tokens), "object_tokens": list(self.object_tokens)}


@dataclass(frozen=True)
class RelationSet:
    """What the POS_RELATIONS socket carries: the prompt and its token-bound relations, and optionally
    a fingerprint of the encoded prompt (a few of its numbers) that lets guidance tell the relations'
    prompt from other prompts of the same positive conditioning."""

    prompt: str
    relations: tuple[TokenRelation, ...]
    fingerprint: Any = field(default=None, compare=False, repr=False)

    def __add__(self, other: "RelationSet") -> "RelationSet":
        if other.prompt and self.prompt and other.prompt != self.prompt:
            raise ValueError("relations chained together must come from the same prompt")
        fp = self.fingerprint if self.fingerprint is not None else other.fingerprint
        return RelationSet(self.prompt or other.prompt, self.relations + other.relations, fp)

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "relations": [r.to_json() for r in self.relations]}


def bind_relations(prompt: str, relations: Sequence[Relation], tokenize: Tokenize | Layout) -> RelationSet:
    """Token-bound relations of a prompt, for guidance and attention maps."""
    bound = []
    for rel in relations:
        s, o = relation_token_indices(prompt, rel, tokenize)
        bound.append(TokenRelation(rel.subject, rel.relation, rel.object, tuple(s), tuple(o)))
    return RelationSet(prompt, tuple(bound))


def find_phrase(prompt: str, words: str) -> tuple[int, int]:
    """Character span of the first whole-word occurrence of `words` in the prompt (any case,
    ComfyUI syntax ignored); ValueError naming the words when they are not there."""
    text = clean_prompt(prompt).lower()
    target = " ".join(words.lower().split())
    if not target:
        raise ValueError("empty words: type the subject or object as it appears in the prompt")
    pattern = r"(?<![\w-])" + r"\W+".join(re.escape(w) for w in target.split()) + r"(?![\w-])"
    found = list(re.finditer(pattern, text))
    if not found:
        raise ValueError(f"{words!r} is not in the prompt; type a word or phrase that appears in it")
    return found[0].span()
