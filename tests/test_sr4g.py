"""SR4G: the 14 relations on hand-made boxes and masks (answers worked out by hand), captions, filters,
splits, determinism, resume, exports, prompts and broken annotation files."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pos_core.__main__ import main
from pos_core.sr4g import dataset as sr4g_build
from pos_core.sr4g import (RELATIONS, AnnotationError, Margins, Options, build, caption, export, noun_phrase,
                           pair_relations, plural, prompts, read_triplets)
from pos_core.sr4g.coco import decode_mask, masks_touch

ROOT = Path(__file__).resolve().parents[1]
W = H = 1000  # normalised = pixels / 1000 in the cases below
OPEN = Options(unseen_fraction=0.0, val_fraction=0.0, test_fraction=0.0)  # every triplet in train


def rel(s, o, margins=Margins(), touching=None, w=W, h=H):
    return pair_relations(s, o, w, h, margins, touching)


# ----------------------------------------------------------------------------- the 14 relations

def test_there_are_fourteen_relations_in_three_families():
    assert len(RELATIONS) == 14 and len(set(RELATIONS)) == 14


def test_left_right_and_separated():
    # centres (200, 500) and (700, 500): angle 180 -> left of; x gap 0.3 -> separated; same size
    assert rel((100, 400, 300, 600), (600, 400, 800, 600)) == {"left of", "separated"}
    assert rel((600, 400, 800, 600), (100, 400, 300, 600)) == {"right of", "separated"}


def test_above_below():
    assert rel((400, 100, 600, 300), (400, 600, 600, 800)) == {"above", "separated"}
    assert rel((400, 600, 600, 800), (400, 100, 600, 300)) == {"below", "separated"}


def test_diagonal_on_the_sector_border_is_ambiguous():
    # centre offset (0.3, 0.3): 45 degrees, on the right of / below border
    s, o = (550, 550, 650, 650), (250, 250, 350, 350)
    assert not rel(s, o) & {"left of", "right of", "above", "below"}
    # the bare rule (no margin) puts 45 degrees in "below" ([45, 135))
    assert "below" in rel(s, o, Margins.exact())


@pytest.mark.parametrize("deg, expected", [(56.0, "below"), (54.0, None), (34.0, "right of"), (36.0, None),
                                           (-56.0, "above"), (146.0, "left of"), (-146.0, "left of")])
def test_angle_margin_of_ten_degrees(deg, expected):
    dx, dy = 0.3 * math.cos(math.radians(deg)), 0.3 * math.sin(math.radians(deg))
    o = (450.0, 450.0, 550.0, 550.0)
    s = (o[0] + dx * W, o[1] + dy * H, o[2] + dx * W, o[3] + dy * H)
    got = rel(s, o) & {"left of", "right of", "above", "below"}
    assert got == ({expected} if expected else set())


def test_centres_too_close_give_no_direction():
    # centres 0.02 apart, boxes not containing each other (different shapes)
    s, o = (440, 300, 520, 700), (300, 470, 700, 530)
    got = rel(s, o)
    assert not got & {"left of", "right of", "above", "below"}
    assert "overlapping" in got


def test_surrounding_inside_overlapping_and_scale():
    big, small = (100, 100, 900, 900), (300, 300, 500, 500)
    assert rel(big, small) == {"surrounding", "overlapping", "wider", "taller", "larger"}
    assert rel(small, big) == {"inside", "overlapping", "narrower", "shorter", "smaller"}


def test_containment_tolerance_is_two_percent_per_side():
    big = (100, 100, 900, 900)
    assert "surrounding" in rel(big, (85, 300, 300, 500))        # sticks out by 0.015: still held
    out = rel(big, (75, 300, 300, 500))                          # sticks out by 0.025: not held
    assert "surrounding" not in out
    # then the centres decide: (500, 500) vs (187.5, 400): angle 17.7 degrees -> right of
    assert "right of" in out and "overlapping" in out


def test_same_box_is_neither_inside_nor_surrounding():
    assert rel((100, 100, 500, 500), (105, 100, 500, 495)) == {"overlapping"}


def test_separated_needs_a_gap_of_one_percent():
    a = (100, 100, 300, 300)
    assert "separated" in rel(a, (312, 100, 512, 300))   # gap 0.012
    got = rel(a, (308, 100, 508, 300))                    # gap 0.008: too close to call
    assert not got & {"separated", "overlapping"}
    assert not rel(a, (300, 100, 500, 300)) & {"separated", "overlapping"}  # touching edges
    assert not rel(a, (300, 100, 500, 300), Margins(gap=0.0)) & {"separated", "overlapping"}  # gap 0 never


@pytest.mark.parametrize("ws, wo, expected", [(200, 160, "wider"), (160, 200, "narrower"), (190, 160, None)])
def test_width_ratio_of_1_25(ws, wo, expected):
    # same heights (100) and areas below the 1.5 area ratio
    got = rel((0, 400, ws, 500), (600, 400, 600 + wo, 500)) & {"wider", "narrower", "larger", "smaller"}
    assert got == ({expected} if expected else set())


@pytest.mark.parametrize("hs, ho, expected", [(250, 200, "taller"), (200, 250, "shorter"), (240, 200, None)])
def test_height_ratio_of_1_25(hs, ho, expected):
    got = rel((0, 0, 100, hs), (600, 0, 700, ho)) & {"taller", "shorter"}
    assert got == ({expected} if expected else set())


def test_area_ratio_of_1_5():
    # 150 x 100 against 100 x 100: width ratio 1.5 (wider), area ratio 1.5 (larger)
    assert {"wider", "larger"} <= rel((0, 0, 150, 100), (600, 0, 700, 100))
    # 140 x 100 against 100 x 100: area ratio 1.4 -> not larger, still wider (1.4 >= 1.25)
    got = rel((0, 0, 140, 100), (600, 0, 700, 100))
    assert "wider" in got and "larger" not in got
    # 120 x 125 against 100 x 100: area 1.5 -> larger, though neither side reaches 1.25 on width
    got = rel((0, 0, 120, 125), (600, 0, 700, 100))
    assert "larger" in got and "wider" not in got and "taller" in got


def test_positions_are_normalised_by_image_size():
    # 200 px apart horizontally in a 2000-wide, 400-high image: dx 0.1, dy 0.1 -> 45 degrees: ambiguous
    s, o = (400, 100, 500, 200), (200, 60, 300, 160)
    assert not rel(s, o, w=2000, h=400) & {"left of", "right of", "above", "below"}
    assert "right of" in rel(s, o, w=400, h=2000)  # same pixels, dx 0.5, dy 0.02


def test_overlapping_boxes_with_masks_apart_are_neither():
    s, o = (100, 100, 500, 500), (300, 300, 700, 700)
    assert "overlapping" in rel(s, o)
    got = rel(s, o, touching=lambda: False)
    assert not got & {"overlapping", "separated"}
    assert "overlapping" in rel(s, o, touching=lambda: True)


# ----------------------------------------------------------------------------- masks

def rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE, column-major runs starting with zeros, written out by hand."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def test_masks_from_polygons_and_both_rle_forms():
    from pycocotools import mask as mask_utils

    poly = [[10, 10, 30, 10, 30, 20, 10, 20]]
    m = decode_mask(poly, 40, 50)
    assert m.shape == (40, 50) and m[15, 20] and not m[5, 5] and not m[30, 40]
    ref = np.zeros((40, 50), dtype=bool)
    ref[5:12, 20:45] = True
    assert (decode_mask(rle_uncompressed(ref), 40, 50) == ref).all()
    enc = mask_utils.encode(np.asfortranarray(ref.astype(np.uint8)))
    enc["counts"] = enc["counts"].decode()
    assert (decode_mask(enc, 40, 50) == ref).all()


def test_masks_touch_within_pixels():
    a = np.zeros((20, 20), dtype=bool)
    b = np.zeros((20, 20), dtype=bool)
    a[5:10, 2:6] = True
    b[5:10, 7:11] = True  # one empty column (6) between them: pixels 2 apart (columns 5 and 7)
    assert masks_touch(a, b, 2) and masks_touch(b, a, 2)
    assert not masks_touch(a, b, 1) and not masks_touch(a, b, 0)
    b[5:10, 5] = True
    assert masks_touch(a, b, 0)
    assert not masks_touch(a, np.zeros_like(a), 3)


# ----------------------------------------------------------------------------- captions

def test_captions_articles_plurals_and_pairs():
    assert caption("dog", "left of", "cat") == "a dog to the left of a cat"
    assert caption("umbrella", "below", "dog", 1, 2) == "an umbrella below two dogs"
    assert caption("person", "larger", "sheep", 3, 2) == "three people larger than two sheep"
    assert caption("elephant", "separated", "hair drier") == "an elephant separated from a hair drier"
    assert noun_phrase("skis") == "a pair of skis" and noun_phrase("scissors", 2) == "two pairs of scissors"
    assert plural("wine glass") == "wine glasses" and plural("teddy bear") == "teddy bears"
    assert plural("knife") == "knives" and plural("bus") == "buses" and plural("fire hydrant") == "fire hydrants"
    assert plural("mouse") == "mice" and plural("butterfly") == "butterflies" and plural("toy") == "toys"
    assert noun_phrase("unicorn") == "a unicorn" and noun_phrase("hour glass") == "an hour glass"
    with pytest.raises(ValueError, match="unknown SR4G relation"):
        caption("dog", "near", "cat")


# ----------------------------------------------------------------------------- hand-made COCO files

CATS = [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "apple"},
        {"id": 4, "name": "person"}, {"id": 5, "name": "umbrella"}, {"id": 6, "name": "bird"}]


def box_poly(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def ann(aid, image, cat, bbox, crowd=0, seg=None):
    return {"id": aid, "image_id": image, "category_id": cat, "bbox": bbox, "iscrowd": crowd,
            "area": bbox[2] * bbox[3], "segmentation": seg if seg is not None else box_poly(*bbox)}


def crowd_rle():
    m = np.zeros((H, W), dtype=bool)
    m[800:900, 800:900] = True
    return rle_uncompressed(m)


def hand_coco():
    images = [{"id": i, "file_name": f"{i:04d}.jpg", "width": W, "height": H} for i in (1, 2, 3)]
    anns = [
        # image 1: a dog left of a cat; a tiny apple (0.25 % of the image) and a crowd of people are dropped
        ann(11, 1, 1, [100, 400, 200, 200]), ann(12, 1, 2, [600, 400, 200, 200]),
        ann(13, 1, 3, [0, 0, 50, 50]), ann(14, 1, 4, [800, 800, 100, 100], crowd=1, seg=crowd_rle()),
        ann(15, 1, 4, [400, 50, 200, 200]),  # a person too, but its class has a crowd: left out
        # image 2: two dogs above an umbrella (the relation holds for both dogs)
        ann(21, 2, 1, [100, 100, 200, 200]), ann(22, 2, 1, [600, 100, 200, 200]), ann(23, 2, 5, [300, 600, 300, 300]),
        # image 3: a bird whose box overlaps a cat's while the masks stay apart (triangles in opposite corners)
        ann(31, 3, 6, [100, 100, 400, 400], seg=[[100, 100, 300, 100, 100, 300]]),
        ann(32, 3, 2, [300, 300, 400, 400], seg=[[700, 700, 500, 700, 700, 500]]),
    ]
    return {"images": images, "annotations": anns, "categories": CATS}


def write(tmp_path: Path, data: dict, make_images: bool = True) -> tuple[str, str]:
    imgs = tmp_path / "images"
    imgs.mkdir(exist_ok=True)
    if make_images:
        for im in data["images"]:
            Image.new("RGB", (8, 8)).save(imgs / im["file_name"])
    p = tmp_path / "instances.json"
    p.write_text(json.dumps(data))
    return str(p), str(imgs)


def triples(out) -> set[tuple]:
    return {(t["image_id"], t["subject"], t["relation"], t["object"]) for t in read_triplets(str(out))}


def test_hand_made_file_gives_the_hand_worked_triplets(tmp_path):
    a, imgs = write(tmp_path, hand_coco())
    summary = build(a, imgs, str(tmp_path / "out"), OPEN)
    got = triples(tmp_path / "out")
    expected = {
        (1, "dog", "left of", "cat"), (1, "dog", "separated", "cat"),
        (1, "cat", "right of", "dog"), (1, "cat", "separated", "dog"),
        # two dogs (centres (200, 200), (700, 200)) vs the umbrella (centre (450, 750)): angles -114 and -66
        (2, "dog", "above", "umbrella"), (2, "dog", "separated", "umbrella"), (2, "dog", "narrower", "umbrella"),
        (2, "dog", "shorter", "umbrella"), (2, "dog", "smaller", "umbrella"),
        (2, "umbrella", "below", "dog"), (2, "umbrella", "separated", "dog"), (2, "umbrella", "wider", "dog"),
        (2, "umbrella", "taller", "dog"), (2, "umbrella", "larger", "dog"),
        # bird (100..500) vs cat (300..700): centres on the diagonal (45 degrees: ambiguous), boxes overlap but
        # the masks do not meet: neither overlapping nor separated; same size: no scale relation
    }
    assert got == expected
    assert summary["triplets"] == len(expected) and summary["per_split"]["train"] == len(expected)
    caps = {t["caption"] for t in read_triplets(str(tmp_path / "out"))}
    assert "two dogs above an umbrella" in caps and "an umbrella larger than two dogs" in caps
    t = next(t for t in read_triplets(str(tmp_path / "out")) if t["relation"] == "above")
    assert t["subject_boxes"] == [[100, 100, 200, 200], [600, 100, 200, 200]]
    assert t["object_boxes"] == [[300, 600, 300, 300]] and t["subject_ann_ids"] == [21, 22]
    assert {"image_id", "file_name", "subject", "relation", "object", "caption", "split"} <= set(t)


def test_without_masks_the_overlapping_boxes_count(tmp_path):
    a, imgs = write(tmp_path, hand_coco())
    build(a, imgs, str(tmp_path / "out"), Options(unseen_fraction=0, val_fraction=0, test_fraction=0,
                                                  use_masks=False))
    got = triples(tmp_path / "out")
    assert (3, "bird", "overlapping", "cat") in got and (3, "cat", "overlapping", "bird") in got


def test_rle_masks_that_touch_make_overlapping(tmp_path):
    m1, m2 = np.zeros((H, W), dtype=bool), np.zeros((H, W), dtype=bool)
    m1[100:500, 100:400] = True
    m2[300:700, 401:700] = True  # column 400 empty between them: 2 px apart, within the touch distance
    from pycocotools import mask as mask_utils

    enc = mask_utils.encode(np.asfortranarray(m2.astype(np.uint8)))
    enc["counts"] = enc["counts"].decode()
    # boxes drawn loosely (they intersect over x 370..430); uncompressed RLE for one, compressed for the other
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}], "categories": CATS,
            "annotations": [ann(1, 1, 1, [100, 100, 330, 400], seg=rle_uncompressed(m1)),
                            ann(2, 1, 2, [370, 300, 330, 400], seg=enc)]}
    a, imgs = write(tmp_path, data)
    build(a, imgs, str(tmp_path / "out"), OPEN)
    assert (1, "dog", "overlapping", "cat") in triples(tmp_path / "out")


def test_same_class_pairs_and_crowded_classes_are_skipped(tmp_path):
    # three dogs (centres x 345, 445, 545; y 225): no dog-dog pair; five cats (centres x 345..545; y 725):
    # more than max_count 4. Every dog-cat angle lies within -112..-68 degrees: above, 23 from a border
    anns = [ann(i, 1, 1, [300 + 100 * (i - 1), 100, 90, 250]) for i in range(1, 4)]
    anns += [ann(10 + i, 1, 2, [300 + 50 * (i - 1), 600, 90, 250]) for i in range(1, 6)]
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}], "categories": CATS,
            "annotations": anns}
    a, imgs = write(tmp_path, data)
    assert build(a, imgs, str(tmp_path / "out"), OPEN)["triplets"] == 0
    build(a, imgs, str(tmp_path / "out2"), Options(unseen_fraction=0, val_fraction=0, test_fraction=0,
                                                   max_count=5))
    got = {t["caption"] for t in read_triplets(str(tmp_path / "out2"))}
    assert "three dogs above five cats" in got


def test_relations_option_and_max_per_image(tmp_path):
    a, imgs = write(tmp_path, hand_coco())
    build(a, imgs, str(tmp_path / "o1"), Options(relations=("left of", "above"), unseen_fraction=0,
                                                 val_fraction=0, test_fraction=0))
    assert triples(tmp_path / "o1") == {(1, "dog", "left of", "cat"), (2, "dog", "above", "umbrella")}
    build(a, imgs, str(tmp_path / "o2"), Options(max_per_image=3, unseen_fraction=0, val_fraction=0,
                                                 test_fraction=0))
    per = {}
    for t in read_triplets(str(tmp_path / "o2")):
        per[t["image_id"]] = per.get(t["image_id"], 0) + 1
    assert per == {1: 3, 2: 3}
    assert triples(tmp_path / "o2") <= triples_full(a, imgs, tmp_path)


def triples_full(a, imgs, tmp_path):
    build(a, imgs, str(tmp_path / "full"), OPEN)
    return triples(tmp_path / "full")


# ----------------------------------------------------------------------------- splits, determinism, resume

def random_coco(n_images=300, n_cats=20, seed=0):
    rng = np.random.RandomState(seed)
    cats = [{"id": c + 1, "name": f"thing{c}"} for c in range(n_cats)]
    images, anns, aid = [], [], 1
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480})
        for _ in range(rng.randint(2, 7)):
            w, h = rng.randint(60, 300), rng.randint(60, 300)
            x, y = rng.randint(0, 640 - w), rng.randint(0, 480 - h)
            anns.append(ann(aid, i, int(rng.randint(1, n_cats + 1)), [x, y, w, h]))
            aid += 1
    return {"images": images, "annotations": anns, "categories": cats}


def test_seen_unseen_splits_are_disjoint(tmp_path):
    a, imgs = write(tmp_path, random_coco())
    s = build(a, imgs, str(tmp_path / "out"), Options(test_fraction=0.3, val_fraction=0.1, split_seed=3))
    unseen = set(s["unseen_categories"])
    assert len(unseen) == 4  # 20 % of 20
    trips = list(read_triplets(str(tmp_path / "out")))
    by = {sp: [t for t in trips if t["split"] == sp] for sp in sr4g_build.SPLITS}
    assert all(by[sp] for sp in sr4g_build.SPLITS), {k: len(v) for k, v in by.items()}
    for t in by["train"] + by["val"] + by["test_seen"]:
        assert t["subject"] not in unseen and t["object"] not in unseen
    for t in by["test_unseen"]:
        assert t["subject"] in unseen and t["object"] in unseen
    imgs_of = {sp: {t["image_id"] for t in by[sp]} for sp in by}
    test_imgs = imgs_of["test_seen"] | imgs_of["test_unseen"]
    assert not imgs_of["train"] & test_imgs and not imgs_of["train"] & imgs_of["val"]
    assert not imgs_of["val"] & test_imgs
    assert {o for t in by["train"] for o in (t["subject"], t["object"])}.isdisjoint(
        {o for t in by["test_unseen"] for o in (t["subject"], t["object"])})
    assert s["per_split"] == {sp: len(by[sp]) for sp in sr4g_build.SPLITS}
    assert sum(sum(v.values()) for v in s["per_relation"].values()) == len(trips)


def test_output_is_deterministic_and_seeded(tmp_path):
    a, imgs = write(tmp_path, random_coco(120))
    o = Options(test_fraction=0.3, split_seed=7)
    build(a, imgs, str(tmp_path / "a"), o)
    build(a, imgs, str(tmp_path / "b"), Options(test_fraction=0.3, split_seed=7))
    build(a, imgs, str(tmp_path / "c"), Options(test_fraction=0.3, split_seed=8))
    ta, tb, tc = ((tmp_path / x / "triplets.jsonl").read_bytes() for x in "abc")
    assert ta == tb and ta != tc


def test_resume_after_interruption_gives_the_same_file(tmp_path, monkeypatch):
    a, imgs = write(tmp_path, random_coco(50))
    build(a, imgs, str(tmp_path / "clean"), OPEN)
    monkeypatch.setattr(sr4g_build, "CHECKPOINT_EVERY", 7)

    def stop(k, n):
        if k == 30:
            raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build(a, imgs, str(out), OPEN, progress=stop)
    assert not (out / "triplets.jsonl").exists() and not (out / "summary.json").exists()
    ck = json.loads((out / "progress.json").read_text())
    assert ck["images_done"] == 28
    seen = []
    build(a, imgs, str(out), OPEN, progress=lambda k, n: seen.append(k))
    assert seen[0] == 29  # started after the checkpoint
    assert (out / "triplets.jsonl").read_bytes() == (tmp_path / "clean" / "triplets.jsonl").read_bytes()
    assert json.loads((out / "summary.json").read_text())["per_split"] == \
        json.loads((tmp_path / "clean" / "summary.json").read_text())["per_split"]
    assert not (out / "progress.json").exists() and not (out / "triplets.jsonl.part").exists()


def test_a_checkpoint_of_other_options_is_not_resumed(tmp_path, monkeypatch):
    a, imgs = write(tmp_path, random_coco(30))
    monkeypatch.setattr(sr4g_build, "CHECKPOINT_EVERY", 5)
    out = tmp_path / "o"

    def stop(k, n):
        if k == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(a, imgs, str(out), OPEN, progress=stop)
    seen = []
    build(a, imgs, str(out), Options(unseen_fraction=0, val_fraction=0, test_fraction=0, min_area=0.05),
          progress=lambda k, n: seen.append(k))
    assert seen[0] == 1


# ----------------------------------------------------------------------------- exports and prompts

def test_kohya_and_hf_exports(tmp_path):
    a, imgs = write(tmp_path, hand_coco())
    build(a, imgs, str(tmp_path / "out"), OPEN)
    n = export(str(tmp_path / "out"), imgs, str(tmp_path / "kohya"), "kohya")
    assert n == 14
    files = sorted(p.name for p in (tmp_path / "kohya").iterdir() if not p.name.startswith("."))
    assert len(files) == 29 and "0001_000.jpg" in files and "0001_000.txt" in files
    assert (tmp_path / "kohya" / "0001_000.txt").read_text().strip() == "a dog to the left of a cat"
    # each pair's triplet, as its caption words it, for PoS Train LoRA (no caption parsing needed)
    rels = [json.loads(x) for x in (tmp_path / "kohya" / "pos_relations.jsonl").read_text().splitlines()]
    assert len(rels) == 14 and rels[0] == {"file_name": "0001_000.jpg", "caption": "a dog to the left of a cat",
                                           "relation": "left of", "subject_phrase": "a dog", "object_phrase": "a cat"}
    assert all(r["subject_phrase"] in r["caption"] and r["object_phrase"] in r["caption"] for r in rels)
    Image.open(tmp_path / "kohya" / "0002_000.jpg").load()  # a readable image (link or copy)
    n = export(str(tmp_path / "out"), imgs, str(tmp_path / "hf"), "hf", copy=True)
    meta = [json.loads(x) for x in (tmp_path / "hf" / "metadata.jsonl").read_text().splitlines()]
    assert len(meta) == n == 14 and meta[0] == {"file_name": "0001_000.jpg", "text": "a dog to the left of a cat"}
    assert not (tmp_path / "hf" / "0001_000.jpg").is_symlink()
    # re-export replaces its own folder; a foreign folder is refused
    assert export(str(tmp_path / "out"), imgs, str(tmp_path / "kohya"), "kohya", limit=2) == 2
    assert len(list((tmp_path / "kohya").glob("*.txt"))) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not written by sr4g"):
        export(str(tmp_path / "out"), imgs, str(tmp_path / "mine"), "kohya")


def test_prompts_file_reads_back_in_evaluate(tmp_path):
    from pos_core import evaluate

    a, imgs = write(tmp_path, hand_coco())
    build(a, imgs, str(tmp_path / "out"), OPEN)
    rows = prompts(str(tmp_path / "out"), "train", str(tmp_path / "p.jsonl"))
    assert len(rows) == 14 and rows[0]["prompt"] == "a dog to the left of a cat" and rows[0]["relation"] == "left of"
    gen = tmp_path / "gen"
    gen.mkdir()
    Image.new("RGB", (64, 64)).save(gen / "0_0.png")
    recs = evaluate.load_records(str(gen), str(tmp_path / "p.jsonl"))
    assert len(recs) == 1 and recs[0]["prompt"] == rows[0]["prompt"] and recs[0]["relation"] == "left of"


# ----------------------------------------------------------------------------- broken input

def broken(data, fn):
    d = json.loads(json.dumps(data))
    fn(d)
    return d


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][1].pop("bbox"), "annotation 12: missing field 'bbox'"),
    (lambda d: d["annotations"][0].update(bbox=[900, 400, 200, 200]), "annotation 11: bbox .* outside"),
    (lambda d: d["annotations"][2].update(category_id=99), "annotation 13: unknown category_id 99"),
    (lambda d: d["annotations"][2].update(image_id=77), "annotation 13: unknown image_id 77"),
    (lambda d: d["annotations"][3].update(segmentation={"counts": [1, 2]}), "annotation 14: an RLE"),
    (lambda d: d["annotations"][4].update(segmentation=[[1, 2, 3]]), "annotation 15: a segmentation polygon"),
    (lambda d: d["annotations"][4].update(id=11), "annotation 11: the id appears twice"),
    (lambda d: d["annotations"][5].update(bbox=[1, 2, -3, 4]), "annotation 21: 'bbox'"),
    (lambda d: d.pop("categories"), "no 'categories'"),
])
def test_broken_annotations_name_the_annotation_and_write_nothing(tmp_path, change, message):
    a, imgs = write(tmp_path, broken(hand_coco(), change))
    with pytest.raises(AnnotationError, match=message):
        build(a, imgs, str(tmp_path / "out"), OPEN)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_image_file_is_named(tmp_path):
    a, imgs = write(tmp_path, hand_coco())
    (Path(imgs) / "0002.jpg").unlink()
    with pytest.raises(AnnotationError, match=r"annotation 21: its image 2 file '0002.jpg' is not in"):
        build(a, imgs, str(tmp_path / "out"), OPEN)
    assert not (tmp_path / "out").exists()


def test_cli_build_prompts_and_errors(tmp_path, capsys):
    a, imgs = write(tmp_path, hand_coco())
    out = tmp_path / "out"
    rc = main(["sr4g", "build", "--annotations", a, "--images", imgs, "--out", str(out), "--unseen-fraction", "0",
               "--val-fraction", "0", "--test-fraction", "0", "--relations", "left_of", "Right-of", "larger",
               "--export", "kohya", str(tmp_path / "k"), "--export", "hf", str(tmp_path / "h")])
    assert rc == 0
    assert triples(out) == {(1, "dog", "left of", "cat"), (1, "cat", "right of", "dog"),
                            (2, "umbrella", "larger", "dog")}
    assert len(list((tmp_path / "k").glob("*.txt"))) == 3 and (tmp_path / "h" / "metadata.jsonl").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_relation"]["left of"]["train"] == 1
    assert set(summary["per_relation"]) == {"left of", "right of", "larger"}
    rc = main(["sr4g", "prompts", "--dataset", str(out), "--split", "train", "--out", str(tmp_path / "p.jsonl")])
    assert rc == 0 and len((tmp_path / "p.jsonl").read_text().splitlines()) == 3
    assert main(["sr4g", "prompts", "--dataset", str(out), "--split", "nope", "--out", str(tmp_path / "q")]) == 2
    with pytest.raises(SystemExit):
        main(["sr4g", "build", "--annotations", a, "--images", imgs, "--relations", "near"])
    capsys.readouterr()


def test_cli_broken_file_exits_nonzero_without_traceback(tmp_path):
    a, imgs = write(tmp_path, broken(hand_coco(), lambda d: d["annotations"][6].update(category_id=42)))
    r = subprocess.run([sys.executable, "-m", "pos_core", "sr4g", "build", "--annotations", a, "--images", imgs,
                        "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "annotation 22: unknown category_id 42" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    Path(a).write_text('{"images": [{"id": 1, ')  # truncated JSON
    r = subprocess.run([sys.executable, "-m", "pos_core", "sr4g", "build", "--annotations", a, "--images", imgs,
                        "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_reports_sr4g_metrics_per_relation_and_split(tmp_path, capsys):
    # boxes given with each prompt (no detector): dog left of cat holds, cat surrounding dog holds,
    # dog above cat does not (the dog is below); prompt 0 has two images, the others one
    rows = [
        {"prompt": "a dog to the left of a cat", "subject": "dog", "relation": "left of", "object": "cat",
         "split": "test_seen", "sr4g": True, "objects": {"dog": [[2, 20, 20, 40]], "cat": [[40, 20, 60, 40]]}},
        {"prompt": "a cat surrounding a dog", "subject": "cat", "relation": "surrounding", "object": "dog",
         "split": "test_unseen", "sr4g": True, "objects": {"cat": [[2, 2, 62, 62]], "dog": [[20, 20, 30, 30]]}},
        {"prompt": "a dog above a cat", "subject": "dog", "relation": "above", "object": "cat",
         "split": "test_unseen", "sr4g": True, "objects": {"dog": [[20, 40, 40, 60]], "cat": [[20, 2, 40, 20]]}},
    ]
    p = tmp_path / "p.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = tmp_path / "gen"
    gen.mkdir()
    for name in ("0_0.png", "0_1.png", "1_0.png", "2_0.png"):
        Image.new("RGB", (64, 64)).save(gen / name)
    assert main(["evaluate", "--images", str(gen), "--prompts", str(p), "--out", str(tmp_path / "ev"),
                 "--device", "cpu"]) == 0
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())["sr4g"]
    assert s["all"] == {"n": 4, "OA": 100.0, "VISOR": 75.0, "VISOR_cond": 75.0}
    assert s["per_relation"]["left of"]["VISOR"] == 100.0 and s["per_relation"]["above"]["VISOR"] == 0.0
    assert s["per_relation"]["surrounding"]["VISOR_cond"] == 100.0
    assert s["per_split"]["test_unseen"]["n"] == 2 and s["per_split"]["test_unseen"]["VISOR"] == 50.0
    per = [json.loads(x) for x in (tmp_path / "ev" / "per_image.jsonl").read_text().splitlines()]
    left = next(r for r in per if r["image"] == "0_0.png")["relations"][0]
    assert left["pse"] is not None and left["pse"] > 0.5 and left["visor"] is True
    assert next(r for r in per if r["image"] == "1_0.png")["relations"][0]["pse"] is None
    assert "SR4G split test_unseen (n=2): OA / VISOR / VISOR_cond | 100.00 / 50.00 / 50.00 %" in capsys.readouterr().out


def test_hand_made_file_surrounding_inside_overlapping_and_scale(tmp_path):
    # a person box (100..900) holding an apple box (300..500); the apple's polygon lies on the person's, so the
    # masks meet; scale: 800 vs 200 wide and high, area 16x
    data = {"images": [{"id": 4, "file_name": "p.jpg", "width": W, "height": H}], "categories": CATS,
            "annotations": [ann(41, 4, 4, [100, 100, 800, 800]), ann(42, 4, 3, [300, 300, 200, 200])]}
    a, imgs = write(tmp_path, data)
    build(a, imgs, str(tmp_path / "out"), OPEN)
    caps = {t["caption"] for t in read_triplets(str(tmp_path / "out"))}
    assert caps == {"a person surrounding an apple", "a person overlapping an apple", "a person wider than an apple",
                    "a person taller than an apple", "a person larger than an apple",
                    "an apple inside a person", "an apple overlapping a person", "an apple narrower than a person",
                    "an apple shorter than a person", "an apple smaller than a person"}
