"""Build an SR4G dataset: filters, class-level triplets, seen / unseen splits, resumable JSONL output.

Filters (object size, crowds, same-class pairs, ambiguity: the kinds the issue attributes to SR4G; the
rules and values are ours, as the paper's text was not reachable here):
crowd annotations are dropped and their class is left out of that image (its count is unknown); objects
whose box covers less than `min_area` of the image are treated as absent; a class with more than
`max_count` instances is left out; pairs of the same class are never captioned. A (subject class,
relation, object class) triplet holds in an image when the relation holds, margins included, between
every subject instance and every object instance, so a caption never depends on which instance is meant.

Splits (the abstract: an unseen split whose train and test object sets are disjoint; the design is
ours): a seeded share of the categories is unseen; each image goes, by a seeded hash of its
id, to train, val or test. Train and val keep triplets of seen classes only; a test image gives its
seen-only triplets to test_seen and its unseen-only triplets to test_unseen. Mixed triplets are dropped,
so no unseen class is ever named in train or val, and no test image is trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field

from . import coco as coco_io
from .captions import caption, noun_phrase
from .rules import FAMILY, MASK_RELATIONS, RELATIONS, Margins, pair_relations

SPLITS = ("train", "val", "test_seen", "test_unseen")
FORMAT_VERSION = 1
CHECKPOINT_EVERY = 2000  # images between two resumable checkpoints


@dataclass
class Options:
    """Everything that decides the output; a resumed build must use the same."""

    relations: tuple[str, ...] = RELATIONS
    split_seed: int = 0
    unseen_fraction: float = 0.2
    val_fraction: float = 0.01
    test_fraction: float = 0.05
    min_area: float = 0.02
    max_count: int = 4
    max_per_image: int = 0  # 0: every triplet
    use_masks: bool = True
    margins: Margins = field(default_factory=Margins)

    def check(self) -> None:
        bad = [r for r in self.relations if r not in RELATIONS]
        if bad or not self.relations:
            raise ValueError(f"unknown relation(s) {', '.join(map(repr, bad)) or '(none given)'}: use some of "
                             f"{', '.join(RELATIONS)}")
        if not (0 <= self.unseen_fraction < 1 and 0 <= self.val_fraction and 0 <= self.test_fraction
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("fractions must lie in [0, 1), and val + test below 1")
        if self.max_per_image < 0 or self.max_count < 1:
            raise ValueError("--max-per-image must be >= 0 and max_count >= 1")

    def fingerprint(self, annotations: str) -> str:
        st = os.stat(annotations)
        blob = json.dumps([FORMAT_VERSION, os.path.abspath(annotations), st.st_size, int(st.st_mtime),
                           asdict(self)], sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def unseen_categories(categories: dict[int, str], seed: int, fraction: float) -> set[int]:
    """The categories held out of training: a seeded sample of round(fraction * count) of them."""
    ids = sorted(categories)
    k = round(fraction * len(ids))
    if fraction > 0 and len(ids) >= 2:
        k = min(max(k, 1), len(ids) - 1)
    return set(random.Random(f"sr4g-unseen-{seed}").sample(ids, k))


def image_bucket(image_id: int, opts: Options) -> str:
    """train, val or test for an image, from a seeded hash of its id (stable across runs and machines)."""
    h = hashlib.blake2b(f"{opts.split_seed}:{image_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2.0 ** 64
    if u < opts.val_fraction:
        return "val"
    if u < opts.val_fraction + opts.test_fraction:
        return "test"
    return "train"


def _xyxy(b) -> tuple[float, float, float, float]:
    return (float(b[0]), float(b[1]), float(b[0] + b[2]), float(b[1] + b[3]))


def image_triplets(data: coco_io.Coco, image_id: int, opts: Options, unseen: set[int]) -> list[dict]:
    """Every SR4G triplet (one dict per caption) of one image, in a fixed order."""
    file_name, width, height = data.images[image_id]
    rows = data.annotations_of(image_id)
    crowd_classes, by_class = set(), {}
    for r in rows:
        c = int(data.category[r])
        if data.crowd[r]:
            crowd_classes.add(c)
            continue
        x, y, w, h = data.bbox[r]
        if w * h < opts.min_area * width * height:
            continue
        by_class.setdefault(c, []).append(r)
    classes = sorted(c for c, rs in by_class.items() if c not in crowd_classes and len(rs) <= opts.max_count)
    if len(classes) < 2:
        return []
    bucket = image_bucket(image_id, opts)
    wanted = set(opts.relations)
    masks: dict[int, object] = {}

    def mask(r):
        if r not in masks:
            seg = data.segmentation(r)
            masks[r] = None if seg is None else coco_io.decode_mask(seg, height, width)
        return masks[r]

    def toucher(ra, rb):
        def touching():
            ma, mb = mask(ra), mask(rb)
            if ma is None or mb is None:
                return True  # no mask: fall back to the boxes
            # the masks can only meet where both boxes, grown by touch_px, overlap: test that window only
            px = opts.margins.touch_px
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _xyxy(data.bbox[ra]), _xyxy(data.bbox[rb])
            x0, y0 = int(max(0, max(ax0, bx0) - px - 1)), int(max(0, max(ay0, by0) - px - 1))
            x1, y1 = int(min(width, min(ax1, bx1) + px + 2)), int(min(height, min(ay1, by1) + px + 2))
            if x1 <= x0 or y1 <= y0:
                return False
            return coco_io.masks_touch(ma[y0:y1, x0:x1], mb[y0:y1, x0:x1], px)
        return touching

    use_masks = opts.use_masks and data.seg_path is not None and any(r in wanted for r in MASK_RELATIONS)
    pair_cache: dict[tuple[int, int], set[str]] = {}
    out = []
    for a in classes:
        for b in classes:
            if a == b:
                continue
            ua, ub = a in unseen, b in unseen
            if ua != ub:
                continue  # mixed seen / unseen: in no split
            if bucket == "test":
                split = "test_unseen" if ua else "test_seen"
            elif ua:
                continue
            else:
                split = bucket
            held = set(wanted)
            for ra in by_class[a]:
                for rb in by_class[b]:
                    key = (ra, rb)
                    if key not in pair_cache:
                        pair_cache[key] = pair_relations(
                            _xyxy(data.bbox[ra]), _xyxy(data.bbox[rb]), width, height, opts.margins,
                            toucher(ra, rb) if use_masks else None)
                    held &= pair_cache[key]
                    if not held:
                        break
                if not held:
                    break
            na, nb = data.categories[a], data.categories[b]
            for rel in RELATIONS:
                if rel in held:
                    out.append({
                        "image_id": image_id, "file_name": file_name, "width": width, "height": height,
                        "subject": na, "relation": rel, "object": nb, "family": FAMILY[rel],
                        "caption": caption(na, rel, nb, len(by_class[a]), len(by_class[b])), "split": split,
                        "subject_count": len(by_class[a]), "object_count": len(by_class[b]),
                        "subject_boxes": [[round(float(v), 2) for v in data.bbox[r]] for r in by_class[a]],
                        "object_boxes": [[round(float(v), 2) for v in data.bbox[r]] for r in by_class[b]],
                        "subject_ann_ids": [int(data.ann_id[r]) for r in by_class[a]],
                        "object_ann_ids": [int(data.ann_id[r]) for r in by_class[b]],
                    })
    if opts.max_per_image and len(out) > opts.max_per_image:
        keep = sorted(random.Random(f"sr4g-cap-{opts.split_seed}-{image_id}").sample(range(len(out)),
                                                                                    opts.max_per_image))
        out = [out[i] for i in keep]
    return out


def _atomic_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _empty_counts() -> dict:
    return {"relation_split": {}, "split": {s: 0 for s in SPLITS}, "images_with_triplets": 0}


def build(annotations: str, images_dir: str | None, out: str, opts: Options | None = None,
          progress=None, check_images: bool = True, log=None) -> dict:
    """Write OUT/triplets.jsonl and OUT/summary.json; resumes from OUT's checkpoint when the options match.

    `progress(done, total)` is called after each image (raise from it to stop; the checkpoint stays).
    Nothing is written before the whole annotation file has been checked. Returns the summary."""
    opts = opts or Options()
    opts.check()
    if not os.path.isfile(annotations):
        raise coco_io.AnnotationError(f"annotation file {annotations!r} does not exist")
    fp = opts.fingerprint(annotations)
    final, part = os.path.join(out, "triplets.jsonl"), os.path.join(out, "triplets.jsonl.part")
    ckpt_path, summary_path = os.path.join(out, "progress.json"), os.path.join(out, "summary.json")
    if os.path.isfile(summary_path) and os.path.isfile(final):
        with open(summary_path, encoding="utf-8") as f:
            done = json.load(f)
        if done.get("fingerprint") == fp:
            if log:
                log(f"{final} is up to date")
            return done
    need_masks = opts.use_masks and any(r in opts.relations for r in MASK_RELATIONS)
    data = coco_io.load(annotations, images_dir if check_images else None, keep_segmentation=need_masks)
    try:
        unseen = unseen_categories(data.categories, opts.split_seed, opts.unseen_fraction)
        ids = data.image_ids()
        os.makedirs(out, exist_ok=True)
        start, offset, counts = 0, 0, _empty_counts()
        if os.path.isfile(ckpt_path) and os.path.isfile(part):
            with open(ckpt_path, encoding="utf-8") as f:
                ck = json.load(f)
            if ck.get("fingerprint") == fp:
                start, offset, counts = ck["images_done"], ck["bytes"], ck["counts"]
                if log:
                    log(f"resuming after {start} of {len(ids)} images")
        rs = counts["relation_split"]
        with open(part, "r+b" if start else "wb") as f:
            f.truncate(offset)
            f.seek(offset)
            for k in range(start, len(ids)):
                trips = image_triplets(data, ids[k], opts, unseen)
                if trips:
                    counts["images_with_triplets"] += 1
                for t in trips:
                    f.write((json.dumps(t, separators=(",", ":")) + "\n").encode())
                    key = f"{t['relation']}|{t['split']}"
                    rs[key] = rs.get(key, 0) + 1
                    counts["split"][t["split"]] += 1
                if (k + 1) % CHECKPOINT_EVERY == 0:
                    f.flush()
                    os.fsync(f.fileno())
                    _atomic_json(ckpt_path, {"fingerprint": fp, "images_done": k + 1, "bytes": f.tell(),
                                             "counts": counts})
                if progress:
                    progress(k + 1, len(ids))
            f.flush()
            os.fsync(f.fileno())
        per_relation = {r: {s: rs.get(f"{r}|{s}", 0) for s in SPLITS} for r in RELATIONS if r in opts.relations}
        summary = {
            "fingerprint": fp, "annotations": os.path.abspath(annotations), "images": len(ids),
            "images_with_triplets": counts["images_with_triplets"], "triplets": sum(counts["split"].values()),
            "per_split": counts["split"], "per_relation": per_relation,
            "unseen_categories": sorted(data.categories[c] for c in unseen),
            "options": {k: v for k, v in asdict(opts).items()},
        }
        os.replace(part, final)
        _atomic_json(summary_path, summary)
        if os.path.exists(ckpt_path):
            os.remove(ckpt_path)
        return summary
    finally:
        data.close()


def read_triplets(out: str, split: str | None = None):
    """Iterate the triplets of a finished build (optionally one split)."""
    path = os.path.join(out, "triplets.jsonl")
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist: run `python -m pos_core sr4g build --out {out}` first")
    with open(path, encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)
            if split is None or t["split"] == split:
                yield t


def _place(src: str, dst: str, copy: bool) -> None:
    if not copy:
        try:
            os.symlink(os.path.abspath(src), dst)
            return
        except OSError:
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
    shutil.copy2(src, dst)


RELATIONS_FILE = "pos_relations.jsonl"  # each pair's triplet, with the phrases as its caption writes them


def export(out: str, images_dir: str, dest: str, kind: str, split: str = "train", copy: bool = False,
           limit: int = 0, progress=None) -> int:
    """Image + caption pairs of one split, one pair per triplet, in `dest`:
    kind "kohya": `<stem>_<n><ext>` + `<stem>_<n>.txt` (what ComfyUI's Load Image and Text Dataset from
    Folder node and kohya-style trainers read); kind "hf": the same images and `metadata.jsonl`
    (`file_name`, `text`) for diffusers / datasets' imagefolder. Both also get `pos_relations.jsonl`
    (`file_name`, `caption`, `relation`, `subject_phrase`, `object_phrase`): the relation of each pair,
    which PoS Train LoRA reads instead of parsing the caption. Images are symlinks (or hard links,
    or copies with `copy`). Built in a sibling folder and moved into place at the end. Returns the count."""
    if kind not in ("kohya", "hf"):
        raise ValueError(f"--export {kind!r}: use kohya or hf")
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    marker = ".sr4g_export"
    if os.path.exists(dest) and os.listdir(dest) and not os.path.exists(os.path.join(dest, marker)):
        raise ValueError(f"export folder {dest!r} exists and was not written by sr4g: choose an empty folder")
    tmp = dest.rstrip("/\\") + ".partial"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    n, per_image, meta, rels = 0, Counter(), [], []
    for t in read_triplets(out, split):
        if limit and n >= limit:
            break
        src = os.path.join(images_dir, t["file_name"])
        if not os.path.isfile(src):
            shutil.rmtree(tmp)
            raise ValueError(f"image {t['image_id']} file {t['file_name']!r} is not in {images_dir}")
        stem, ext = os.path.splitext(os.path.basename(t["file_name"]))
        name = f"{stem}_{per_image[t['image_id']]:03d}"
        per_image[t["image_id"]] += 1
        _place(src, os.path.join(tmp, name + ext.lower()), copy)
        if kind == "kohya":
            with open(os.path.join(tmp, name + ".txt"), "w", encoding="utf-8") as f:
                f.write(t["caption"] + "\n")
        else:
            meta.append({"file_name": name + ext.lower(), "text": t["caption"]})
        rels.append({"file_name": name + ext.lower(), "caption": t["caption"], "relation": t["relation"],
                     "subject_phrase": noun_phrase(t["subject"], t.get("subject_count", 1)),
                     "object_phrase": noun_phrase(t["object"], t.get("object_count", 1))})
        n += 1
        if progress:
            progress(n)
    if kind == "hf":
        with open(os.path.join(tmp, "metadata.jsonl"), "w", encoding="utf-8") as f:
            for m in meta:
                f.write(json.dumps(m) + "\n")
    with open(os.path.join(tmp, RELATIONS_FILE), "w", encoding="utf-8") as f:  # PoS Train LoRA reads it
        for r in rels:
            f.write(json.dumps(r) + "\n")
    open(os.path.join(tmp, marker), "w").close()
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return n


def prompts(out: str, split: str = "test_unseen", dest: str | None = None, limit: int = 0) -> list[dict]:
    """Evaluation prompts of one split, one per distinct caption, in the JSONL form `evaluate` reads
    (`prompt`, `subject`, `relation`, `object`, `split`, `sr4g`); images for line i are named i_*.png."""
    if split not in SPLITS:
        raise ValueError(f"--split {split!r}: use one of {', '.join(SPLITS)}")
    seen, rows = set(), []
    for t in read_triplets(out, split):
        if t["caption"] in seen:
            continue
        seen.add(t["caption"])
        rows.append({"prompt_id": len(rows), "prompt": t["caption"], "subject": t["subject"],
                     "relation": t["relation"], "object": t["object"], "subject_count": t["subject_count"],
                     "object_count": t["object_count"], "split": split, "sr4g": True})
        if limit and len(rows) >= limit:
            break
    if dest:
        d = os.path.dirname(os.path.abspath(dest))
        os.makedirs(d, exist_ok=True)
        tmp = dest + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, dest)
    return rows
