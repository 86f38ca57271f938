"""Layout from relations: each object's region of the image, for regional prompting (ConditioningSetArea-style).

The training-free rival of PoS Guidance (LMD-style layouts): the relations' sides become boxes, one prompt
per object is given its box, and no gradient is taken. Regions are (x, y, width, height) as fractions of
the image. Only relations with a side in the image plane (left, right, above, below) place anything.
"""

from __future__ import annotations

from .relations import AXIS_2D

MARGIN = 1 / 16  # gap at each inner edge, as a fraction of the side: two halves are 2 * MARGIN apart

Region = tuple[float, float, float, float]
_AXIS = {"left": 1, "right": 1, "above": 0, "below": 0}  # 0: y (rows), 1: x (columns)


def halves(relation: str, margin: float = MARGIN) -> tuple[Region, Region]:
    """(subject region, object region) of one relation: its two sides of the image, less `margin` each at
    the midline."""
    out = regions([("s", relation, "o")], margin)
    return out["s"], out["o"]


def regions(relations: list[tuple[str, str, str]], margin: float = MARGIN) -> dict[str, Region]:
    """name -> region of every object of (subject, relation, object) triples. On each axis the relations
    order the objects into bands (left / above first; an object two relations put on one side shares
    that band), the image splits into as many equal bands less `margin` at each inner edge, and an axis
    no relation of an object constrains gives it the full span. Raises ValueError on a relation with no
    side, on an order that contradicts itself, and on a margin that leaves a band empty."""
    names: list[str] = []
    for s, rel, o in relations:
        if rel not in _AXIS:
            raise ValueError(f"layout: relation {rel!r} has no side in the image plane; a layout places "
                             f"{', '.join(AXIS_2D)} only")
        names += [n for n in (s, o) if n not in names]
    rank: list[dict[str, int]] = [{}, {}]
    for ax in (0, 1):
        edges = [(s, o) if rel in ("left", "above") else (o, s) for s, rel, o in relations if _AXIS[rel] == ax]
        for first, second in edges:
            rank[ax].setdefault(first, 0)
            rank[ax].setdefault(second, 0)
        for _ in range(len(rank[ax]) + 1):  # longest-path ranks; still rising after n passes means a cycle
            moved = False
            for first, second in edges:
                if rank[ax][second] < rank[ax][first] + 1:
                    rank[ax][second], moved = rank[ax][first] + 1, True
            if not moved:
                break
        else:
            raise ValueError("layout: the relations contradict each other (" +
                             "; ".join(f"{s} {r} {o}" for s, r, o in relations if _AXIS[r] == ax) + ")")
    out: dict[str, Region] = {}
    for n in names:
        span = []
        for ax in (1, 0):  # x, then y
            if n not in rank[ax]:
                span.append((0.0, 1.0))
                continue
            k, bands = rank[ax][n], max(rank[ax].values()) + 1
            lo = k / bands + (margin if k > 0 else 0.0)
            hi = (k + 1) / bands - (margin if k < bands - 1 else 0.0)
            if hi - lo <= 0.0:
                raise ValueError(f"layout: margin {margin:g} leaves no room for {bands} bands; use a smaller margin")
            span.append((lo, hi))
        (x0, x1), (y0, y1) = span
        out[n] = (x0, y0, x1 - x0, y1 - y0)
    return out


def split_placeable(relations: list[tuple[str, str, str]]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(relations a layout can place, the rest): depth ("front", "behind") and "near" have no side."""
    return [r for r in relations if r[1] in _AXIS], [r for r in relations if r[1] not in _AXIS]
