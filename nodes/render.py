"""Drawing for the pack's preview images: maps or masks over an image, with their marginals."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

STRIP = 56  # pixels of the marginal plots under and beside each tile
SUBJECT, OBJECT = (255, 70, 50), (60, 140, 255)


def _heat(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(m)[None, None].float()
    t = F.interpolate(t, size=(size[1], size[0]), mode="bilinear", align_corners=False)[0, 0].numpy()
    return t / max(float(t.max()), 1e-12)


def _curve(draw: ImageDraw.ImageDraw, values: np.ndarray, box: tuple[int, int, int, int], color, vertical=False):
    x0, y0, x1, y1 = box
    v = values / max(float(values.max()), 1e-12)
    n = len(v)
    if vertical:
        pts = [(x0 + v[i] * (x1 - x0 - 4) + 2, y0 + (i + 0.5) * (y1 - y0) / n) for i in range(n)]
    else:
        pts = [(x0 + (i + 0.5) * (x1 - x0) / n, y1 - 2 - v[i] * (y1 - y0 - 4)) for i in range(n)]
    draw.line(pts, fill=color, width=2)


def render_tile(image: np.ndarray, map_a: np.ndarray, map_b: np.ndarray, title: str) -> Image.Image:
    """One relation over one image: heatmaps (subject red, object blue) and their x/y marginals."""
    h, w = image.shape[:2]
    ha, hb = _heat(map_a, (w, h)), _heat(map_b, (w, h))
    base = image.astype(np.float32) * 0.45
    over = base + 0.55 * 255 * (ha[..., None] * np.array(SUBJECT) / 255 + hb[..., None] * np.array(OBJECT) / 255)
    tile = Image.new("RGB", (w + STRIP, h + STRIP + 18), (24, 24, 24))
    tile.paste(Image.fromarray(np.clip(over, 0, 255).astype(np.uint8)), (0, 18))
    d = ImageDraw.Draw(tile)
    d.text((4, 3), title, fill=(235, 235, 235))
    for m, color in ((map_a, SUBJECT), (map_b, OBJECT)):
        _curve(d, m.sum(axis=0), (0, h + 18, w, h + 18 + STRIP), color)
        _curve(d, m.sum(axis=1), (w, 18, w + STRIP, h + 18), color, vertical=True)
    return tile


def panel(tiles: list[Image.Image]) -> torch.Tensor:
    """Tiles side by side as one [H, W, 3] float image."""
    out = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)), (24, 24, 24))
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width
    return torch.from_numpy(np.asarray(out, dtype=np.float32) / 255.0)


def grid(images: list[torch.Tensor], columns: int) -> torch.Tensor:
    """[H, W, 3] images of one size in a grid of `columns`."""
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    out = torch.zeros(rows * h, columns * w, 3)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = im[..., :3]
    return out


def caption(image: np.ndarray, text: str) -> Image.Image:
    """An image (H x W x 3 uint8) with a one-line caption bar above it."""
    h, w = image.shape[:2]
    out = Image.new("RGB", (w, h + 18), (24, 24, 24))
    out.paste(Image.fromarray(image), (0, 18))
    ImageDraw.Draw(out).text((4, 3), text, fill=(235, 235, 235))
    return out


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> [H, W, 3] float tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
