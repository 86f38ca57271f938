"""What the joint-attention (MM-DiT) families share: block choice, map capture on stock blocks, and the
attention of the gradient pass (PyTorch SDPA, which has a backward whatever backend ComfyUI runs)."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from ...pos_core import attention
from .. import conds
from .base import StopForward

MAPS = "maps"  # blocks / attention_level value: chosen per run from the model's own maps
BLOCKS_HELP = ('"auto" (per family), "maps" (chosen on the first step of each run from the model\'s own maps), '
               '"all", or a list such as "11,12,14,17,18" (Flux double / SD3 joint blocks; "s3" = Flux single '
               'block 3)')


def block_label(key: tuple[str, int]) -> str:
    """A block key as the blocks input writes it: "12" (double / joint block), "s3" (single block)."""
    return f"s{key[1]}" if key[0] == "single_block" else str(key[1])


def scaled(picks: list[int], published_depth: int, depth: int) -> list[int]:
    """Published block indices of a full-depth model mapped to the same relative depth of `depth` blocks."""
    if depth == published_depth:
        return sorted(set(picks))
    return sorted({round(i * (depth - 1) / (published_depth - 1)) for i in picks})


def parse_blocks(text: str, double: int, single: int, auto: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """("double_block" | "single_block", index) keys in execution order, from the node's blocks input."""
    text = (text or "auto").strip().lower()
    if text == "auto":
        return auto
    if text in ("all", MAPS):  # maps: every block is a candidate until the run chooses
        return [("double_block", i) for i in range(double)] + [("single_block", i) for i in range(single)]
    keys = set()
    for item in filter(None, (s.strip() for s in text.split(","))):
        m = re.fullmatch(r"([ds]?)(\d+)", item)
        if not m:
            raise ValueError(f"blocks: {item!r} is not a block; use {BLOCKS_HELP}")
        kind, i = ("single_block" if m.group(1) == "s" else "double_block"), int(m.group(2))
        count = single if kind == "single_block" else double
        if i >= count:
            what = "single blocks" if kind == "single_block" else ("double blocks" if single else "joint blocks")
            raise ValueError(f"blocks: {item} is out of range: this model has {count} {what} (0-{count - 1})")
        keys.add((kind, i))
    if not keys:
        raise ValueError(f"blocks is empty; use {BLOCKS_HELP}")
    return sorted(keys, key=lambda k: (k[0] == "single_block", k[1]))


def stack_targets(family, level: str, blocks: str, picks: list[int], published_depth: int, depth: int) -> list[tuple]:
    """Family.targets of a model that is one stack of joint blocks (SD3, Qwen-Image, Z-Image): `auto` is the
    published picks at the model's relative depth; records whether the run chooses by its maps."""
    if level != "auto":
        raise ValueError(f"attention_level applies to UNet models; for {family.label} choose blocks with the blocks input")
    auto = [("double_block", i) for i in scaled(picks, published_depth, depth)]
    family.by_maps, family.fallback = (blocks or "").strip().lower() == MAPS, auto
    return parse_blocks(blocks, depth, 0, auto)


def stack_candidates(depth: int) -> list[tuple[str, list[tuple]]]:
    """Family.candidates of a one-stack model: every block, alone, in execution order."""
    return [(block_label(("double_block", i)), [("double_block", i)]) for i in range(depth)]


def heads_view(t: torch.Tensor, heads: int | None, skip_reshape: bool) -> torch.Tensor:
    """[B, heads, L, d] of an attention input given as such (skip_reshape) or as [B, L, heads * d]
    (SD3 passes v as [B, L, heads, d])."""
    if skip_reshape:
        return t
    return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)


def record(run, q: torch.Tensor, k: torch.Tensor, txt_len: int, options: dict | None = None) -> None:
    """Append the image-to-text maps of one joint attention ([B, heads, L, d] inputs) to the run: one
    piece per chunk of the chosen conds, on the token grid of what the call ran on (an area cond runs
    on its crop of the latent)."""
    for rows, reg in conds.chunks(run.selection, options or {}, q.shape[0]):
        gh, gw = run.family.grid(reg[1]) if reg else run.grid
        if q.shape[2] < txt_len + gh * gw:
            continue
        maps = attention.joint_token_maps(q[rows], k[rows], (0, txt_len), (txt_len, txt_len + gh * gw),
                                          run.groups, gh, gw, run.settings.softmax)
        run.layer_maps.append((maps, reg[0] if reg else None))


def grad_capture(run, txt_len: int, last: bool, options: dict | None = None):
    """Map capture of the gradient pass: record, and after the last chosen block's maps stop the pass
    (the rest of that block, its attention output and MLPs, does not reach the loss)."""

    def capture(q: torch.Tensor, k: torch.Tensor) -> None:
        record(run, q, k, txt_len, options)
        if last:
            raise StopForward

    return capture


def capture_override(run, txt_len: int, previous):
    """optimized_attention_override that records the maps of the joint attention (sequence = text, then
    the image) and then runs the attention exactly as it would have run."""

    def override(func, *args, **kwargs):
        q, k = args[0], args[1]
        heads = kwargs.get("heads", args[3] if len(args) > 3 else None)
        skip = kwargs.get("skip_reshape", False)
        record(run, heads_view(q, heads, skip), heads_view(k, heads, skip), txt_len,
               kwargs.get("transformer_options") or {})
        if previous is not None:
            return previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    return override


def with_capture(run, args: dict, txt_len: int) -> dict:
    """Block arguments whose transformer_options record the maps of this block's joint attention."""
    to = dict(args.get("transformer_options") or {})
    to["optimized_attention_override"] = capture_override(run, txt_len, to.get("optimized_attention_override"))
    return dict(args, transformer_options=to)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
    """Attention of the gradient pass on [B, heads, L, d] inputs -> [B, L, heads * d] (PyTorch SDPA,
    as ComfyUI's attention_pytorch computes it)."""
    b, heads, _, d = q.shape
    if mask is not None:
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
    return out.transpose(1, 2).reshape(b, -1, heads * d)


def grad_override(capture=None):
    """optimized_attention_override of the gradient pass for families whose stock blocks are differentiable
    as they are (no in-place updates: Qwen-Image, Z-Image): the attention runs as PyTorch SDPA (the backend
    ComfyUI or another node chose may have no backward), and `capture` sees its rotated q, k first."""

    def override(func, *args, **kwargs):
        q, k, v = args[0], args[1], args[2]
        heads = kwargs.get("heads", args[3] if len(args) > 3 else None)
        mask = kwargs.get("mask", args[4] if len(args) > 4 else None)
        skip = kwargs.get("skip_reshape", False)
        qh, kh, vh = (heads_view(t, heads, skip) for t in (q, k, v))
        if capture is not None:
            capture(qh, kh)
        out = sdpa(qh, kh, vh, mask)
        if kwargs.get("skip_output_reshape", False):
            return out.reshape(out.shape[0], out.shape[1], qh.shape[1], -1).transpose(1, 2)
        return out

    return override


def with_override(args: dict, override) -> dict:
    """Block arguments whose transformer_options carry `override` (the caller's dict is not changed)."""
    to = dict(args.get("transformer_options") or {})
    to["optimized_attention_override"] = override
    return dict(args, transformer_options=to)
