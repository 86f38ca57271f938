"""The 14 SR4G relations between two annotated objects, decided from their boxes (and masks for one).

SR4G (Salaberria et al., arXiv 2403.00587, abstract and dataset description) derives captions with 14
explicit relations in three families: projective, topological and scale. Its method text was not
reachable here; the rules here are the same group's COCO rules (Azkune et al., "Grounding Spatial Relations in
Text-Only Language Models", arXiv 2403.13666, code `gazkune/SpatialLM`), rewritten, plus margins of ours
that keep borderline pairs out of training captions (ambiguous cases). Boxes are
(x0, y0, x1, y1) in pixels; positions are compared in image-normalised coordinates, sizes in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROJECTIVE = ("left of", "right of", "above", "below")
TOPOLOGICAL = ("surrounding", "inside", "overlapping", "separated")
SCALE = ("wider", "narrower", "taller", "shorter", "larger", "smaller")
RELATIONS = PROJECTIVE + TOPOLOGICAL + SCALE
FAMILY = {**{r: "projective" for r in PROJECTIVE}, **{r: "topological" for r in TOPOLOGICAL},
          **{r: "scale" for r in SCALE}}
MASK_RELATIONS = ("overlapping",)  # the only relation that reads masks (when they are given)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Margins:
    """Thresholds of the rules; the zero margins (`Margins.exact()`) give the bare rules, used to judge
    generated images; the defaults keep borderline pairs out of the dataset."""

    contain_tol: float = 0.02   # containment tolerance on each side, normalised (SpatialLM's value)
    angle_deg: float = 10.0     # projective: distance from the 45-degree sector borders
    min_dist: float = 0.05      # projective: normalised distance between the box centres
    gap: float = 0.01           # separated: normalised gap between the boxes, in x or in y
    side_ratio: float = 1.25    # wider/narrower, taller/shorter: ratio of box widths / heights
    area_ratio: float = 1.5     # larger/smaller: ratio of box areas
    touch_px: int = 2           # overlapping with masks: the masks meet within this many pixels

    @classmethod
    def exact(cls) -> "Margins":
        return cls(angle_deg=0.0, min_dist=0.0, gap=0.0, side_ratio=1.0 + 1e-9, area_ratio=1.0 + 1e-9)


def _norm(b: Box, w: float, h: float) -> Box:
    return (b[0] / w, b[1] / h, b[2] / w, b[3] / h)


def contains(outer: Box, inner: Box, tol: float) -> bool:
    """`outer` holds `inner`, which may stick out by `tol` on each side (normalised boxes)."""
    return (outer[0] <= inner[0] + tol and outer[1] <= inner[1] + tol
            and outer[2] >= inner[2] - tol and outer[3] >= inner[3] - tol)


def direction(s: Box, o: Box, margins: Margins) -> str | None:
    """Projective relation of subject s to object o (normalised boxes) from the angle of the vector
    between the box centres (y grows downwards): right of [-45, 45), below [45, 135), left of |a| >= 135,
    above [-135, -45). None when the centres are closer than `min_dist` or the angle lies within
    `angle_deg` of a sector border."""
    dx = (s[0] + s[2]) / 2 - (o[0] + o[2]) / 2
    dy = (s[1] + s[3]) / 2 - (o[1] + o[3]) / 2
    if math.hypot(dx, dy) < margins.min_dist or (dx == 0 and dy == 0):
        return None
    a = math.degrees(math.atan2(dy, dx))
    border = min(abs(a - b) for b in (-135.0, -45.0, 45.0, 135.0))
    if border < margins.angle_deg:
        return None
    if -45.0 <= a < 45.0:
        return "right of"
    if 45.0 <= a < 135.0:
        return "below"
    if -135.0 <= a < -45.0:
        return "above"
    return "left of"


def box_gap(s: Box, o: Box) -> tuple[float, float]:
    """Gaps between two boxes along x and y (negative where they overlap along that axis)."""
    return max(o[0] - s[2], s[0] - o[2]), max(o[1] - s[3], s[1] - o[3])


def pair_relations(s_px: Box, o_px: Box, width: float, height: float, margins: Margins = Margins(),
                   touching=None) -> set[str]:
    """Every relation that holds for subject box `s_px` and object box `o_px` in a width x height image.

    `touching`, when given, is a callable answering whether the two masks meet (within
    `margins.touch_px`): boxes that intersect while their masks stay apart are neither overlapping nor
    separated. Without it, overlapping means the boxes intersect (area > 0)."""
    s, o = _norm(s_px, width, height), _norm(o_px, width, height)
    out: set[str] = set()
    s_holds_o, o_holds_s = contains(s, o, margins.contain_tol), contains(o, s, margins.contain_tol)
    if s_holds_o and not o_holds_s:
        out.add("surrounding")
    elif o_holds_s and not s_holds_o:
        out.add("inside")
    elif not (s_holds_o or o_holds_s):
        d = direction(s, o, margins)
        if d:
            out.add(d)
    gx, gy = box_gap(s, o)
    if gx < 0 and gy < 0:  # the boxes share some area
        if touching is None or touching():
            out.add("overlapping")
    elif max(gx, gy) >= margins.gap and max(gx, gy) > 0:
        out.add("separated")
    sw, sh = s_px[2] - s_px[0], s_px[3] - s_px[1]
    ow, oh = o_px[2] - o_px[0], o_px[3] - o_px[1]
    for big, small, a, b in (("wider", "narrower", sw, ow), ("taller", "shorter", sh, oh),
                             ("larger", "smaller", sw * sh, ow * oh)):
        r = margins.area_ratio if big == "larger" else margins.side_ratio
        if b > 0 and a >= r * b:
            out.add(big)
        elif a > 0 and b >= r * a:
            out.add(small)
    return out
