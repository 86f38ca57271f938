"""PSE: the Probability-of-Superiority evaluation score for 2D and depth relations.

A mask (binary or soft) becomes x- and y-marginal distributions; "A left of B" scores
max(P(XA < XB) - P(XA > XB), 0). Depth relations compare histograms of the depth inside
each mask the same way. Formulas: PAPER.md sections 1-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .relations import AXIS_2D, DEPTH, canonical_relation

DEPTH_BINS = 128
ACCURACY_THRESHOLD = 0.01
_SLICE_BYTES = 1 << 20  # validated CPU masks are summed and checked by slices of this size (L2-resident)
# same-width integer views: a float whose sign bit is set (negative, -0.0, negative NaN) views as < 0
_SIGN_VIEWS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
               torch.bfloat16: torch.int16}


@dataclass
class PSEResult:
    """Batched PSE: scores [N] in [0, 1] and which object was missing (empty mask) per pair."""

    scores: torch.Tensor
    missing_a: torch.Tensor
    missing_b: torch.Tensor

    def aggregate(self) -> dict:
        """Mean PSE, accuracy and object accuracy of this batch (see `aggregate`)."""
        return aggregate(self.scores, self.missing_a, self.missing_b)


def _coerce(masks, name: str, ndim: int) -> torch.Tensor:
    """Masks (torch, numpy, nested lists; bool or numeric) as a floating tensor of `ndim` dims."""
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.ascontiguousarray(masks))
    elif not isinstance(masks, torch.Tensor):
        try:
            masks = torch.as_tensor(np.asarray(masks, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be an array of numbers, got {type(masks).__name__}") from e
    if masks.ndim != ndim:
        shape = "H x W" if ndim == 2 else "N x H x W"
        raise ValueError(f"{name} must be {shape}, got shape {tuple(masks.shape)}")
    if not masks.is_floating_point():
        masks = masks.to(torch.float32)
    return masks


def _check_range(lo: torch.Tensor, name: str) -> None:
    if bool(torch.isnan(lo).any()):
        raise ValueError(f"{name} contains NaN values; masks must be finite")
    if bool((lo < 0).any()):
        raise ValueError(f"{name} has negative values; masks must be >= 0 (binary or soft)")


def as_masks(masks, name: str = "mask", ndim: int = 2) -> torch.Tensor:
    """Validate masks (finite, >= 0, `ndim` dims) and return them as a floating tensor."""
    masks = _coerce(masks, name, ndim)
    if masks.numel():
        _check_range(masks.amin().reshape(1), name)
        if not bool(torch.isfinite(masks.amax())):
            raise ValueError(f"{name} contains infinite values; masks must be finite")
    return masks


def axis_marginal(masks: torch.Tensor, axis: str, name: str = "masks", validate: bool = True) -> torch.Tensor:
    """Unnormalised marginal of [N, H, W] masks on one axis: x -> [N, W], y -> [N, H].

    Only the relation's axis is reduced, so the masks are read once. With `validate` every pixel is
    checked to be >= 0 in the same pass: on the CPU each cache-sized slice is summed, then the min of
    its bits as integers (a set sign bit reads as negative) is taken while the slice is still in cache.
    Only when a sign bit is set does the exact check run (it lets -0.0 pass and names NaN); NaN and
    infinity always surface through the sums.
    """
    bits = _SIGN_VIEWS.get(masks.dtype)
    if not validate or masks.numel() == 0:
        out = _reduce(masks, axis)
    elif bits is None or masks.device.type != "cpu" or not masks.is_contiguous():
        _check_range(masks.amin().reshape(1), name)
        out = _reduce(masks, axis)
    else:
        out, signed = _reduce_checked(masks, axis, bits)
        if signed:
            _check_range(masks.amin().reshape(1), name)
    if out.numel() and not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} contains NaN or infinite values; masks must be finite")
    return out


def _reduce_checked(masks: torch.Tensor, axis: str, bits: torch.dtype) -> tuple[torch.Tensor, bool]:
    """`_reduce` of contiguous CPU masks, and whether any value has its sign bit set, slice by slice:
    an integer min runs at about twice the speed of a float min and reads the slice from cache."""
    n, h, w = masks.shape
    per = max(1, _SLICE_BYTES // (h * w * masks.element_size()))
    signs = masks.view(bits)
    lows = torch.empty((n + per - 1) // per, dtype=bits)
    if axis == "x" and masks.dtype in (torch.float32, torch.float64):
        out = torch.empty((n, 1, w), dtype=masks.dtype)
        ones = torch.ones(1, 1, h, dtype=masks.dtype).expand(per, 1, h)
        for k, i in enumerate(range(0, n, per)):
            torch.bmm(ones[:min(per, n - i)], masks[i:i + per], out=out[i:i + per])
            torch.amin(signs[i:i + per], out=lows[k])
        return out.squeeze(1), bool(lows.amin() < 0)
    out = torch.empty((n, w if axis == "x" else h), dtype=masks.dtype)
    for k, i in enumerate(range(0, n, per)):
        torch.sum(masks[i:i + per], dim=-2 if axis == "x" else -1, out=out[i:i + per])
        torch.amin(signs[i:i + per], out=lows[k])
    return out, bool(lows.amin() < 0)


def _reduce(masks: torch.Tensor, axis: str) -> torch.Tensor:
    """Column sums (x) or row sums (y) of [N, H, W]; column sums as a batched product with ones,
    which streams rows and beats a strided sum on the CPU."""
    if axis == "y":
        return masks.sum(dim=-1)
    if masks.device.type == "cpu" and masks.dtype in (torch.float32, torch.float64):
        ones = torch.ones(1, 1, masks.shape[1], dtype=masks.dtype).expand(masks.shape[0], 1, masks.shape[1])
        return torch.bmm(ones, masks).squeeze(1)
    return masks.sum(dim=-2)


def prob_not_greater(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """P(Xq <= Xp) = sum_k p(k) * CDF_q(k) for distributions on the last axis (normalised)."""
    return (p * torch.cumsum(q, dim=-1)).sum(dim=-1)


def superiority(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """P(Xp < Xq) - P(Xp > Xq): how much p lies before q (ties cancel), in [-1, 1]."""
    return prob_not_greater(q, p) - prob_not_greater(p, q)


def _normalise(x: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    return x / total.clamp_min(torch.finfo(x.dtype).tiny).unsqueeze(-1)


def _axis_and_order(relation: str) -> tuple[str, bool]:
    rel = canonical_relation(relation)
    if rel in DEPTH:
        raise ValueError(f"relation {relation!r} is a depth relation: use pse_depth with a depth map; "
                         "pse takes left, right, above or below")
    if rel not in AXIS_2D:
        raise ValueError(f"relation {relation!r} has no direction (near); PSE scores left, right, "
                         "above, below (2D) and front, behind (depth)")
    return ("x" if rel in ("left", "right") else "y"), rel in ("left", "above")


def _scores(pa: torch.Tensor, pb: torch.Tensor, forward: bool) -> PSEResult:
    """PSE from unnormalised marginals of A and B on the relation's axis."""
    ta, tb = pa.sum(dim=-1), pb.sum(dim=-1)
    pa, pb = _normalise(pa, ta), _normalise(pb, tb)
    sup = superiority(pa, pb) if forward else superiority(pb, pa)
    missing_a, missing_b = ta <= 0, tb <= 0
    scores = torch.where(missing_a | missing_b, torch.zeros_like(sup), sup.clamp(0.0, 1.0))
    return PSEResult(scores, missing_a, missing_b)


def pse_batch(masks_a, masks_b, relation: str, validate: bool = True) -> PSEResult:
    """PSE of N mask pairs ([N, H, W] each, any device) for one 2D relation "A <relation> B".

    `validate=False` skips the per-pixel >= 0 check for masks known to be valid (detector output).
    """
    a = _coerce(masks_a, "masks_a", 3)
    b = _coerce(masks_b, "masks_b", 3)
    if a.shape != b.shape:
        raise ValueError(f"masks_a {tuple(a.shape)} and masks_b {tuple(b.shape)} differ in shape; "
                         "resize one to the other first")
    axis, forward = _axis_and_order(relation)
    return _scores(axis_marginal(a, axis, "masks_a", validate), axis_marginal(b, axis, "masks_b", validate), forward)


def pse(mask_a, mask_b, relation: str) -> float:
    """2D PSE of one pair of H x W masks for "A <relation> B"; 0.0 when a mask is empty."""
    a = as_masks(mask_a, "mask_a")
    b = as_masks(mask_b, "mask_b")
    if a.shape != b.shape:
        raise ValueError(f"mask_a {tuple(a.shape)} and mask_b {tuple(b.shape)} differ in shape; "
                         "resize one to the other first")
    return float(pse_batch(a[None], b[None], relation, validate=False).scores[0])


def depth_histograms(masks_a, masks_b, depth, bins: int = DEPTH_BINS):
    """Histograms of depth inside each mask, on `bins` bins over [min non-zero, max] of both masks.

    Soft masks weight their pixels. Unlike the authors' np.digitize, pixels exactly at the minimum
    fall into the first bin instead of being dropped. Returns (hist_a, hist_b), each [N, bins].
    """
    a = as_masks(masks_a, "masks_a", 3)
    b = as_masks(masks_b, "masks_b", 3)
    d = depth if isinstance(depth, torch.Tensor) else torch.as_tensor(np.asarray(depth, dtype=np.float32))
    if d.ndim == 2:
        d = d.expand(a.shape[0], *d.shape)
    if d.shape != a.shape:
        raise ValueError(f"depth must be H x W or N x H x W like the masks {tuple(a.shape)}, "
                         f"got {tuple(d.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"masks_a {tuple(a.shape)} and masks_b {tuple(b.shape)} differ in shape")
    d = d.to(device=a.device, dtype=torch.float32)
    if not bool(torch.isfinite(d).all()):
        raise ValueError("depth contains NaN or infinite values")
    inside = (a > 0) | (b > 0)
    big = torch.finfo(torch.float32).max
    lo = torch.where(inside & (d > 0), d, torch.full_like(d, big)).flatten(1).amin(1)
    hi = torch.where(inside, d, torch.full_like(d, -big)).flatten(1).amax(1)
    width = (hi - lo).clamp_min(1e-12) / bins
    idx = ((d - lo[:, None, None]) / width[:, None, None]).floor().clamp(0, bins - 1).long()
    valid = (d >= lo[:, None, None]).float()
    n = a.shape[0]
    ha = torch.zeros(n, bins, device=a.device).scatter_add_(1, idx.flatten(1), (a * valid).flatten(1))
    hb = torch.zeros(n, bins, device=a.device).scatter_add_(1, idx.flatten(1), (b * valid).flatten(1))
    return ha, hb


def pse_depth_batch(masks_a, masks_b, depth, relation: str, bins: int = DEPTH_BINS) -> PSEResult:
    """3D PSE of N pairs: "A in front of B" means A's (inverse, larger = nearer) depth is larger."""
    rel = canonical_relation(relation)
    if rel not in DEPTH:
        raise ValueError(f"relation {relation!r} is not a depth relation; pse_depth takes front or "
                         "behind (use pse for left, right, above, below)")
    ha, hb = depth_histograms(masks_a, masks_b, depth, bins)
    return _scores(ha, hb, forward=rel == "behind")


def pse_depth(mask_a, mask_b, depth, relation: str, bins: int = DEPTH_BINS) -> float:
    """3D PSE of one pair of H x W masks with an H x W relative (inverse) depth map."""
    a = as_masks(mask_a, "mask_a")
    b = as_masks(mask_b, "mask_b")
    d = depth if isinstance(depth, torch.Tensor) else torch.as_tensor(np.asarray(depth, dtype=np.float32))
    if d.shape != a.shape:
        raise ValueError(f"depth {tuple(d.shape)} must have the masks' shape {tuple(a.shape)}")
    return float(pse_depth_batch(a[None], b[None], d[None], relation, bins).scores[0])


def aggregate(scores, missing_a=None, missing_b=None) -> dict:
    """Prompt-set aggregates of the authors' calculate_pse.py.

    mean_pse (missing objects count 0), accuracy (fraction with PSE > 0.01) and object_accuracy
    (fraction where both objects were found).
    """
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    n = s.numel()
    if n == 0:
        return {"n": 0, "mean_pse": 0.0, "accuracy": 0.0, "object_accuracy": 0.0}
    ma = torch.zeros(n, dtype=torch.bool) if missing_a is None else torch.as_tensor(missing_a).flatten().bool().cpu()
    mb = torch.zeros(n, dtype=torch.bool) if missing_b is None else torch.as_tensor(missing_b).flatten().bool().cpu()
    s = torch.where(ma | mb, torch.zeros_like(s), s.cpu())
    return {
        "n": n,
        "mean_pse": float(s.mean()),
        "accuracy": float((s > ACCURACY_THRESHOLD).double().mean()),
        "object_accuracy": float((~(ma | mb)).double().mean()),
    }
