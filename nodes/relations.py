"""Relation nodes: spatial relations of a prompt, bound to the text-token indices of its objects
(CLIP context for SD1.x / SD2.x / SDXL, the joint-attention text sequence for Flux.1 and SD3)."""

from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from ..pos_core.relations import CANONICAL, canonical_relation, parse
from ..pos_core.tokens import (LLMStream, RelationSet, TokenRelation, bind_relations, clip_stream, find_phrase,
                               find_run, t5_stream, word_token_indices)

from .common import CATEGORY, PosRelations
from .conds import fingerprint

KEYS = ("l", "g", "h")  # CLIP-L (SD1, SDXL), CLIP-G (SDXL), OpenCLIP-H (SD2): positions are shared


def clip_tokenize(clip):
    """A pos_core `Tokenize` over the CLIP's own tokenizer: prompt -> chunks of token ids."""

    def tokenize(text: str) -> list[list[int]]:
        tokens = clip.tokenize(text)
        key = next((k for k in KEYS if k in tokens), None)
        if key is None:
            raise ValueError(f"this CLIP ({', '.join(tokens)}) is not a CLIP-L/G/H text encoder: "
                             "PoS relations work with SD1.x, SD2.x and SDXL checkpoints")
        return [[t if isinstance(t, int) else -1 for t, *_ in chunk] for chunk in tokens[key]]

    return tokenize


def _stream_tokenize(clip, key: str):
    """Token ids of one encoder of the CLIP (key "l", "g", "t5xxl"), chunked as ComfyUI lays them out."""
    cache: dict[str, list[list[int]]] = {}

    def tokenize(text: str) -> list[list[int]]:
        if text not in cache:
            cache[text] = [[t if isinstance(t, int) else -1 for t, *_ in chunk] for chunk in clip.tokenize(text)[key]]
        return cache[text]

    return tokenize


def _has_encoder(clip, name: str) -> bool:
    """Whether the loaded text encoder includes `name` (SD3's CLIP-L, CLIP-G or T5 may be left out)."""
    return getattr(getattr(clip, "cond_stage_model", None), name, True) is not None


# LLM text encoders ComfyUI 0.33 loads for the 2026 families (the tokenizer's key): which model reads them
LLM_KEYS = {"qwen25_7b": "Qwen-Image", "qwen3_4b": "Z-Image or Flux.2 klein 4B", "qwen3_8b": "Flux.2 klein 9B",
            "mistral3_24b": "Flux.2 dev"}
FLUX2_TEXT = 512  # Flux.2 dev: the model left-pads its Mistral text to 512 tokens (model_base.Flux2.extra_conds)
QWEN_IM_START, QWEN_USER, QWEN_NEWLINE = 151644, 872, 198


def _ids(tokens) -> list[int]:
    """Token ids of one encoder's tokenize output (chunks of (id, weight, ...)); embeddings as -1."""
    return [t if isinstance(t, int) else -1 for chunk in tokens for t, *_ in chunk]


def qwen_image_dropped(ids: list[int]) -> int:
    """How many leading tokens ComfyUI's Qwen-Image text encoder drops (its system prompt: the text up to the
    second <|im_start|>, and "user\n" after it), as QwenImageTEModel.encode_token_weights counts them."""
    end, seen = -1, 0
    for i, t in enumerate(ids):
        if t == QWEN_IM_START and seen < 2:
            end, seen = i, seen + 1
    if len(ids) > end + 3 and ids[end + 1] == QWEN_USER and ids[end + 2] == QWEN_NEWLINE:
        end += 3
    return end


def llm_stream(clip, key: str) -> LLMStream:
    """The prompt's place in what the model attends to, for an LLM text encoder: after the chat template
    ComfyUI wraps it in, less the tokens Qwen-Image's encoder drops, plus Flux.2 dev's left padding."""
    cache: dict[tuple[str, bool], list[int]] = {}
    inner = getattr(clip.tokenizer, key, None) or getattr(clip.tokenizer, f"clip_{key}", None)
    pad = getattr(inner, "pad_token", None)

    def tokens(text: str, template: bool) -> list[int]:
        if (text, template) not in cache:
            kw = {} if template else {"llama_template": "{}"}
            ids = _ids(clip.tokenize(text, **kw)[key])
            if not template:  # the bare text: no start token (Mistral's <s>), no padding (klein pads to 512)
                if key == "mistral3_24b" and ids[:1] == [1]:
                    ids = ids[1:]
                while ids and pad is not None and ids[-1] == pad:
                    ids.pop()
            cache[(text, template)] = ids
        return cache[(text, template)]

    def encode(text: str) -> list[int]:
        return tokens(text, False) if text else []

    def place(prompt: str) -> tuple[int, int]:
        full, raw = tokens(prompt, True), encode(prompt)
        first = find_run(full, raw) if raw else 0
        if first < 0:
            raise ValueError(f"could not find the prompt's tokens inside {LLM_KEYS[key]}'s chat template")
        length = len(full)
        if key == "qwen25_7b":
            dropped = qwen_image_dropped(full)
            first, length = first - dropped, length - dropped
        if key == "mistral3_24b" and length < FLUX2_TEXT:
            first, length = first + FLUX2_TEXT - length, FLUX2_TEXT
        return first, length

    return LLMStream(encode, place)


def clip_layout(clip):
    """The token layout of the model context this CLIP encodes to: a Tokenize for CLIP-only models,
    a list of streams for Flux.1 (T5 only), Chroma (T5 only, unpadded), SD3 / SD3.5 (CLIP chunks of 77, then
    T5) and the LLM text encoders of Flux.2, Qwen-Image and Z-Image."""
    keys = set(clip.tokenize("a"))
    if keys == {"l", "t5xxl"}:  # Flux.1: CLIP-L only gives the pooled vector
        return [t5_stream(_stream_tokenize(clip, "t5xxl"))]
    if keys == {"t5xxl"}:  # Chroma (CLIP type chroma / pixart): T5 alone, not padded
        return [t5_stream(_stream_tokenize(clip, "t5xxl"))]
    if len(keys) == 1 and next(iter(keys)) in LLM_KEYS:
        return [llm_stream(clip, next(iter(keys)))]
    if keys == {"g", "l", "t5xxl"}:  # SD3 / SD3.5
        layout = []
        if _has_encoder(clip, "clip_l") or _has_encoder(clip, "clip_g"):
            layout.append(clip_stream(_stream_tokenize(clip, "l")))
        if _has_encoder(clip, "t5xxl"):
            layout.append(t5_stream(_stream_tokenize(clip, "t5xxl")))
        return layout
    if keys & set(KEYS) and keys <= set(KEYS):
        return clip_tokenize(clip)
    raise ValueError(f"this CLIP ({', '.join(sorted(keys))}) is not a text encoder PoS relations know: they work "
                     "with the CLIP of SD1.x, SD2.x and SDXL, Flux.1's (CLIP-L + T5-XXL), SD3 / SD3.5's "
                     "(CLIP-L + CLIP-G + T5-XXL), Chroma's (T5-XXL), and the LLM encoders of Flux.2 (Mistral 3, "
                     "Qwen3), Qwen-Image (Qwen2.5-VL) and Z-Image (Qwen3)")


def _check_clip(clip) -> None:
    if clip is None:
        raise ValueError("clip is empty: connect the CLIP output of your checkpoint loader")


class PoSRelationsFromPrompt(io.ComfyNode):
    """Parse the prompt's spatial relations and encode it, so one node replaces CLIP Text Encode."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSRelationsFromPrompt",
            display_name="PoS Relations from Prompt",
            category=CATEGORY,
            description="Finds spatial relations such as 'a cat to the left of a dog' in the prompt, "
                        "with the CLIP tokens of each object, and encodes the prompt.",
            inputs=[
                io.String.Input("text", multiline=True, dynamic_prompts=True,
                                default="a photo of a cat to the left of a dog",
                                tooltip="The prompt. Relations: left/right of, above/over/on top of, "
                                        "below/under, in front of, behind, next to. Weights like "
                                        "(red car:1.2) are fine."),
                io.Clip.Input("clip", optional=True,
                              tooltip="The CLIP of your checkpoint (SD1.x, SD2.x, SDXL), or Flux.1's DualCLIPLoader / "
                                      "SD3's TripleCLIPLoader: needed for guidance, attention maps and the "
                                      "CONDITIONING output; scoring works without it."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="CONDITIONING",
                                       tooltip="The encoded prompt, as CLIP Text Encode gives it."),
                PosRelations.Output(display_name="POS_RELATIONS",
                                    tooltip="The relations and their token indices, for PoS Guidance, "
                                            "PoS Attention Maps, PoS Score and PoS Seed Search."),
                io.String.Output(display_name="relations",
                                 tooltip="The relations found, one a line, to check the parse."),
            ],
        )

    @classmethod
    def execute(cls, text: str, clip=None) -> io.NodeOutput:
        rels = parse(text)
        if not rels:
            raise ValueError(
                f"no spatial relation found in the prompt {text!r}. Write one such as 'a cat to the "
                "left of a dog', 'a lamp above a table' or 'a vase in front of a clock', or add them "
                "by hand with PoS Relation nodes.")
        if clip is None:  # scoring only: no token indices, no conditioning
            bound = RelationSet(text, tuple(TokenRelation(r.subject, r.relation, r.object, (), ()) for r in rels))
            cond = None
        else:
            cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
            bound = dataclasses.replace(bind_relations(text, rels, clip_layout(clip)), fingerprint=fingerprint(cond))
        summary = "\n".join(f"{r.subject} | {r.relation} | {r.object}   tokens {list(r.subject_tokens)} / "
                            f"{list(r.object_tokens)}" for r in bound.relations)
        return io.NodeOutput(cond, bound, summary)


class PoSRelation(io.ComfyNode):
    """One relation typed by hand; chain several into one POS_RELATIONS."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSRelation",
            display_name="PoS Relation",
            category=CATEGORY,
            description="A relation 'subject relation object' typed by hand, found in the prompt's tokens.",
            inputs=[
                io.Clip.Input("clip", tooltip="The CLIP the prompt is encoded with."),
                io.String.Input("text", multiline=True, default="a photo of a cat and a dog",
                                tooltip="The prompt exactly as you encode it (convert to an input to share it)."),
                io.String.Input("subject", default="cat",
                                tooltip="The object that should be placed: a word or phrase of the prompt."),
                io.Combo.Input("relation", options=list(CANONICAL), default="left",
                               tooltip="Where the subject goes relative to the object."),
                io.String.Input("object", default="dog",
                                tooltip="The reference object: a word or phrase of the prompt."),
                PosRelations.Input("relations", optional=True,
                                   tooltip="Relations to add this one to (chain PoS Relation nodes)."),
            ],
            outputs=[PosRelations.Output(display_name="POS_RELATIONS",
                                         tooltip="The chained relations with their token indices.")],
        )

    @classmethod
    def execute(cls, clip, text: str, subject: str, relation: str, object: str,
                relations: RelationSet | None = None) -> io.NodeOutput:
        _check_clip(clip)
        rel = canonical_relation(relation)
        tokenize = clip_layout(clip)
        found = {}
        for name, words in (("subject", subject), ("object", object)):
            try:
                span = find_phrase(text, words)
            except ValueError as e:
                raise ValueError(f"{name} {words!r} is not in the prompt {text!r}: type a word that appears "
                                 "in the prompt (or change the prompt)") from e
            phrase = " ".join(words.lower().split())
            found[name] = tuple(word_token_indices(text, span, phrase, tokenize))
        if found["subject"] == found["object"]:
            raise ValueError("subject and object point at the same words: give two different objects")
        one = RelationSet(text, (TokenRelation(" ".join(subject.split()), rel, " ".join(object.split()),
                                               found["subject"], found["object"]),))
        return io.NodeOutput(one if relations is None else relations + one)


NODES = [PoSRelationsFromPrompt, PoSRelation]
