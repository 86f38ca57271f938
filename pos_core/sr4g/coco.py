"""COCO-format instance annotations, read as a stream and checked before anything is written.

`images` and `categories` are small and kept; each annotation is reduced to a few numbers (id, image,
category, box, crowd flag) in arrays, and its segmentation, only when a mask relation asks for it, to a
temporary file read back by offset. A whole COCO 2017 train file thus never sits in memory as Python
objects. Masks are decoded with pycocotools (polygons, RLE or compressed RLE).
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from dataclasses import dataclass, field

import numpy as np

BOX_TOLERANCE_PX = 1.0  # boxes may pass the image border by this much (COCO's float rounding)


class AnnotationError(ValueError):
    """A broken annotation file; the message names the annotation (or image) at fault."""


@dataclass
class Coco:
    """The reduced annotation file: images, categories and per-annotation arrays sorted by image."""

    categories: dict[int, str]
    images: dict[int, tuple[str, int, int]]  # id -> (file_name, width, height)
    ann_id: np.ndarray
    image_id: np.ndarray
    category: np.ndarray
    bbox: np.ndarray  # N x 4, COCO x, y, w, h
    crowd: np.ndarray
    seg_offset: np.ndarray | None = None
    seg_length: np.ndarray | None = None
    seg_path: str | None = None
    _starts: dict = field(default_factory=dict)
    _seg_file: object = None

    def image_ids(self) -> list[int]:
        """Images in a fixed order (ascending id)."""
        return sorted(self.images)

    def annotations_of(self, image_id: int) -> range:
        """Row indices of an image's annotations."""
        a, b = self._starts.get(image_id, (0, 0))
        return range(a, b)

    def segmentation(self, row: int):
        """The stored segmentation of annotation row `row` (None when segmentations were not kept)."""
        if self.seg_path is None or self.seg_length[row] == 0:
            return None
        if self._seg_file is None:
            self._seg_file = open(self.seg_path, "rb")
        self._seg_file.seek(int(self.seg_offset[row]))
        return json.loads(self._seg_file.read(int(self.seg_length[row])))

    def close(self) -> None:
        if self._seg_file is not None:
            self._seg_file.close()
            self._seg_file = None
        if self.seg_path and os.path.exists(self.seg_path):
            os.remove(self.seg_path)
        self.seg_path = None


def _items(path: str, prefix: str):
    """Stream the items of a top-level array with ijson; whole-file json as a fallback."""
    try:
        import ijson
    except ImportError:  # pragma: no cover - ijson is in requirements.txt
        with open(path, "rb") as f:
            yield from json.load(f).get(prefix.split(".")[0], [])
        return
    with open(path, "rb") as f:
        try:
            yield from ijson.items(f, prefix, use_float=True)
        except ijson.JSONError as e:
            raise AnnotationError(f"{path} is not valid JSON: {e}") from None


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _check_segmentation(seg, aid, height: int, width: int) -> None:
    if isinstance(seg, list):
        for poly in seg:
            if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(map(_num, poly))):
                raise AnnotationError(f"annotation {aid}: a segmentation polygon must be a list of at least 3 "
                                      "x, y pairs")
    elif isinstance(seg, dict):
        if "counts" not in seg or list(seg.get("size", [])) != [height, width]:
            raise AnnotationError(f"annotation {aid}: an RLE segmentation needs 'counts' and 'size' "
                                  f"[{height}, {width}] (the image's height and width)")
    else:
        raise AnnotationError(f"annotation {aid}: 'segmentation' must be polygons (list) or RLE (dict)")


def load(path: str, images_dir: str | None = None, keep_segmentation: bool = False,
         progress=None) -> Coco:
    """Read and check a COCO instances file; raises AnnotationError naming the first broken annotation.

    Checks: required fields, numeric boxes inside the image (1 px tolerance), known image and category
    ids, unique ids, well-formed segmentations (when kept), and, with `images_dir`, that every annotated
    image's file exists."""
    if not os.path.isfile(path):
        raise AnnotationError(f"annotation file {path!r} does not exist")
    categories: dict[int, str] = {}
    for c in _items(path, "categories.item"):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise AnnotationError(f"category {c!r}: needs an integer 'id' and a 'name'")
        categories[c["id"]] = c["name"].strip()
    if not categories:
        raise AnnotationError(f"{path}: no 'categories' (a COCO instances file lists them)")
    images: dict[int, tuple[str, int, int]] = {}
    for im in _items(path, "images.item"):
        if not isinstance(im, dict) or not isinstance(im.get("id"), int):
            raise AnnotationError(f"image {im!r}: needs an integer 'id'")
        iid = im["id"]
        fn, w, h = im.get("file_name"), im.get("width"), im.get("height")
        if not isinstance(fn, str) or not _num(w) or not _num(h) or w <= 0 or h <= 0:
            raise AnnotationError(f"image {iid}: needs 'file_name', and positive 'width' and 'height'")
        if iid in images:
            raise AnnotationError(f"image {iid}: the id appears twice")
        images[iid] = (fn, int(w), int(h))
    if not images:
        raise AnnotationError(f"{path}: no 'images'")

    ids, imgs, cats, crowd = array("q"), array("q"), array("i"), array("b")
    boxes = array("d")
    seg_off, seg_len = array("q"), array("q")
    seg_file = None
    if keep_segmentation:
        fd, seg_path = tempfile.mkstemp(prefix="sr4g_seg_", suffix=".jsonl")
        seg_file = os.fdopen(fd, "wb")
    seen: set[int] = set()
    try:
        for n, a in enumerate(_items(path, "annotations.item")):
            aid = a.get("id") if isinstance(a, dict) else None
            if not isinstance(aid, int):
                raise AnnotationError(f"annotation number {n + 1} ({str(a)[:80]}): needs an integer 'id'")
            for key in ("image_id", "category_id", "bbox"):
                if key not in a:
                    raise AnnotationError(f"annotation {aid}: missing field {key!r}")
            if aid in seen:
                raise AnnotationError(f"annotation {aid}: the id appears twice")
            seen.add(aid)
            iid, cid, bb = a["image_id"], a["category_id"], a["bbox"]
            if iid not in images:
                raise AnnotationError(f"annotation {aid}: unknown image_id {iid!r}")
            if cid not in categories:
                raise AnnotationError(f"annotation {aid}: unknown category_id {cid!r}")
            if not (isinstance(bb, list) and len(bb) == 4 and all(map(_num, bb))) or bb[2] < 0 or bb[3] < 0:
                raise AnnotationError(f"annotation {aid}: 'bbox' must be [x, y, width, height] with width, "
                                      f"height >= 0, got {bb!r}")
            _, w, h = images[iid]
            t = BOX_TOLERANCE_PX
            if bb[0] < -t or bb[1] < -t or bb[0] + bb[2] > w + t or bb[1] + bb[3] > h + t:
                raise AnnotationError(f"annotation {aid}: bbox {bb} lies outside its image {iid} ({w} x {h})")
            ic = a.get("iscrowd", 0)
            if ic not in (0, 1, True, False):
                raise AnnotationError(f"annotation {aid}: 'iscrowd' must be 0 or 1, got {ic!r}")
            ids.append(aid)
            imgs.append(iid)
            cats.append(cid)
            crowd.append(int(ic))
            boxes.extend(bb)
            if seg_file is not None:
                seg = a.get("segmentation")
                if seg is None or seg == []:
                    seg_off.append(0)
                    seg_len.append(0)
                else:
                    _check_segmentation(seg, aid, h, w)
                    blob = json.dumps(seg, separators=(",", ":")).encode()
                    seg_off.append(seg_file.tell())
                    seg_len.append(len(blob))
                    seg_file.write(blob)
            if progress and n % 50000 == 0:
                progress(n)
        if not ids:
            raise AnnotationError(f"{path}: no 'annotations'")
    except BaseException:
        if seg_file is not None:
            seg_file.close()
            os.remove(seg_path)
        raise
    if seg_file is not None:
        seg_file.close()

    image_id = np.frombuffer(imgs, dtype=np.int64)
    order = np.argsort(image_id, kind="stable")
    coco = Coco(categories, images, np.frombuffer(ids, dtype=np.int64)[order], image_id[order],
                np.frombuffer(cats, dtype=np.int32)[order],
                np.frombuffer(boxes, dtype=np.float64).reshape(-1, 4)[order],
                np.frombuffer(crowd, dtype=np.int8)[order].astype(bool))
    if seg_file is not None:
        coco.seg_offset = np.frombuffer(seg_off, dtype=np.int64)[order]
        coco.seg_length = np.frombuffer(seg_len, dtype=np.int64)[order]
        coco.seg_path = seg_path
    uniq, starts = np.unique(coco.image_id, return_index=True)
    ends = np.append(starts[1:], len(coco.image_id))
    coco._starts = {int(i): (int(a), int(b)) for i, a, b in zip(uniq, starts, ends)}
    if images_dir is not None:
        if not os.path.isdir(images_dir):
            coco.close()
            raise AnnotationError(f"--images {images_dir!r} is not a folder")
        for iid, (a, _) in coco._starts.items():
            fn = images[iid][0]
            if not os.path.isfile(os.path.join(images_dir, fn)):
                coco.close()
                raise AnnotationError(f"annotation {int(coco.ann_id[a])}: its image {iid} file {fn!r} is not in "
                                      f"{images_dir}")
    return coco


def decode_mask(seg, height: int, width: int) -> np.ndarray:
    """H x W bool mask of a COCO segmentation: polygons, uncompressed RLE or compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        counts = seg["counts"]
        rle = {"size": seg["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def masks_touch(a: np.ndarray, b: np.ndarray, px: int) -> bool:
    """Whether two masks overlap or come within `px` pixels of each other (square neighbourhood)."""
    if (a & b).any():
        return True
    if px <= 0:
        return False
    ys, xs = np.nonzero(b)
    if len(ys) == 0 or not a.any():
        return False
    grown = a.copy()
    h, w = a.shape
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            if dx or dy:
                grown[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] |= \
                    a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return bool((grown & b).any())
