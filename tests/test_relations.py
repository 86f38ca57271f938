import sys
from pathlib import Path

import pytest

from pos_core.relations import CANONICAL, canonical_relation, noun_words, parse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from parser_accuracy import evaluate, freeform_prompts, template_prompts  # noqa: E402


def triples(prompt):
    return [(r.subject, r.relation, r.object) for r in parse(prompt)]


@pytest.mark.parametrize(
    "phrase,rel",
    [("to the left of", "left"), ("on the left of", "left"), ("left of", "left"),
     ("on the left side of", "left"), ("to the left side of", "left"), ("on the left-hand side of", "left"),
     ("to the right of", "right"), ("on the right of", "right"), ("right of", "right"),
     ("on the right side of", "right"),
     ("above", "above"), ("on the top of", "above"), ("on top of", "above"), ("over", "above"), ("atop", "above"),
     ("below", "below"), ("under", "below"), ("beneath", "below"), ("underneath", "below"),
     ("on the bottom of", "below"),
     ("in front of", "front"), ("behind", "behind"), ("hidden by", "behind"),
     ("next to", "near"), ("near", "near"), ("on side of", "near"), ("beside", "near")],
)
def test_every_phrase_of_the_paper(phrase, rel):
    assert triples(f"a cat {phrase} a dog") == [("cat", rel, "dog")]
    assert canonical_relation(phrase) == rel


@pytest.mark.parametrize(
    "prompt,expected",
    [
        ("a cat is above a dog", [("cat", "above", "dog")]),
        ("a cat sitting under a table", [("cat", "below", "table")]),
        ("a bird flying over a house", [("bird", "above", "house")]),
        ("a man standing in front of a car", [("man", "front", "car")]),
        ("The oval plate was on top of the square placemat.", [("oval plate", "above", "square placemat")]),
        ("to the right of a book is a candle", [("candle", "right", "book")]),
        ("Behind the sofa stands a tall lamp", [("tall lamp", "behind", "sofa")]),
        ("a cat left of a dog and a bird above the dog", [("cat", "left", "dog"), ("bird", "above", "dog")]),
        ("a cat left of a dog, a bird above the dog", [("cat", "left", "dog"), ("bird", "above", "dog")]),
        ("a teddy bear to the left of a wine glass", [("teddy bear", "left", "wine glass")]),
        ("a hot dog below a cell phone", [("hot dog", "below", "cell phone")]),
        ("a potted plant next to a fire hydrant", [("potted plant", "near", "fire hydrant")]),
        ("two cats to the left of three dogs", [("cats", "left", "dogs")]),
        ("A RED CAR To The Left Of A Blue Truck", [("red car", "left", "blue truck")]),
        ("a (red car:1.2) to the left of a ((blue truck))", [("red car", "left", "blue truck")]),
        ("[cat] above (dog:0.8)", [("cat", "above", "dog")]),
        ("a cat to the left of a dog, 4k, photorealistic, trending on artstation", [("cat", "left", "dog")]),
        ("a photo of a cat to the left of a dog", [("cat", "left", "dog")]),
        ("a lamp which is above a desk", [("lamp", "above", "desk")]),
        ("a vase hidden by a clock", [("vase", "behind", "clock")]),
        ("a sleeping cat right next to a dog", [("sleeping cat", "near", "dog")]),
    ],
)
def test_forms(prompt, expected):
    assert triples(prompt) == expected


@pytest.mark.parametrize(
    "prompt",
    ["a beautiful landscape", "a left-handed guitarist", "the right choice", "a dog on a couch",
     "", "a bowl of fruit, oil painting", "a cat on the left", "a table with a lamp above"],
)
def test_no_relation(prompt):
    assert parse(prompt) == []


def test_spans_point_into_the_prompt():
    p = "A (Red Car:1.2) on the left side of a ((blue truck)), 4k"
    (r,) = parse(p)
    assert p[slice(*r.subject_span)] == "Red Car"
    assert p[slice(*r.object_span)] == "blue truck"
    assert r.to_json()["subject_span"] == list(r.subject_span)


def test_noun_words():
    assert noun_words("red car") == ["car"]
    assert noun_words("fluffy teddy bear") == ["teddy", "bear"]
    assert noun_words("potted plants") == ["potted", "plants"]


def test_canonical_relation_errors():
    assert set(CANONICAL) == {"left", "right", "above", "below", "front", "behind", "near"}
    with pytest.raises(ValueError, match="unknown relation"):
        canonical_relation("diagonal")
    with pytest.raises(ValueError, match="non-empty"):
        canonical_relation("")
    with pytest.raises(ValueError, match="prompt must be text"):
        parse(None)


def test_template_set_accuracy():
    items = template_prompts()
    assert len(items) >= 500
    r = evaluate(items)
    assert r["exact"] >= 0.98, r["errors"][:5]


def test_freeform_set_accuracy():
    items = freeform_prompts()
    assert len(items) >= 200
    r = evaluate(items)
    assert r["exact"] >= 0.90, r["errors"][:10]
    assert r["precision"] >= 0.93 and r["recall"] >= 0.93
