"""Parser gaps from a user report: an adjective before an -ing compound noun ("a blue sleeping bag"),
and an "X of Y" subject with a pronoun object ("a desk with a jar of pencils to the left of it").
Each case checks the triples and that the spans point at the noun phrases."""

import pytest

from pos_core.relations import noun_span, parse


def spans(prompt: str) -> list[tuple[str, str, str]]:
    """(subject text, relation, object text) read back from the prompt through the spans."""
    return [(prompt[slice(*r.subject_span)], r.relation, prompt[slice(*r.object_span)]) for r in parse(prompt)]


def check(prompt: str, expected: list[tuple[str, str, str]]) -> None:
    assert [(r.subject, r.relation, r.object) for r in parse(prompt)] == [
        (s.lower(), rel, o.lower()) for s, rel, o in expected]
    assert spans(prompt) == expected


@pytest.mark.parametrize("prompt,expected", [
    ("a tall lamp standing to the left of a blue sleeping bag", [("tall lamp", "left", "blue sleeping bag")]),
    ("a teddy bear to the right of a white washing machine",
     [("teddy bear", "right", "white washing machine")]),
    ("a lamp above a white frying pan", [("lamp", "above", "white frying pan")]),
    ("a dog next to red running shoes", [("dog", "near", "red running shoes")]),
    ("red running shoes next to a dog", [("red running shoes", "near", "dog")]),
    ("a seagull above a small red fishing boat", [("seagull", "above", "small red fishing boat")]),
    ("a small red fishing boat in front of a lighthouse", [("small red fishing boat", "front", "lighthouse")]),
    # case and prompt syntax kept in the spans
    ("A Teddy Bear to the right of a White Washing Machine",
     [("Teddy Bear", "right", "White Washing Machine")]),
    ("a cat near a (dark-green sleeping bag:1.2), 4k", [("cat", "near", "dark-green sleeping bag")]),
    ("a cat under an old rocking chair and a dog beside a hand-painted rocking chair",
     [("cat", "below", "old rocking chair"), ("dog", "near", "hand-painted rocking chair")]),
    # objects placed by sides read the same noun phrases
    ("on the left, a blue sleeping bag, on the right, a red fishing boat",
     [("blue sleeping bag", "left", "red fishing boat")]),
    # no adjective: already read
    ("a washing machine next to a dining table", [("washing machine", "near", "dining table")]),
    ("a cat on top of a fishing boat", [("cat", "above", "fishing boat")]),
])
def test_adjective_before_ing_compound(prompt, expected):
    check(prompt, expected)


@pytest.mark.parametrize("prompt,expected", [
    ("a cat sleeping on top of a sofa", [("cat", "above", "sofa")]),
    ("a lamp standing to the left of a table", [("lamp", "left", "table")]),
    # after a noun, an -ing word is a verb: the object ends before it
    ("a cat near a small dog sleeping on a mat", [("cat", "near", "small dog")]),
    ("a bird above a girl flying kites", [("bird", "above", "girl")]),
    ("a lamp near a white dog chewing bones", [("lamp", "near", "white dog")]),
    ("a bird above a tall man standing in a field", [("bird", "above", "tall man")]),
])
def test_participles_stay_verbs(prompt, expected):
    check(prompt, expected)


def test_noun_span_of_new_phrases():
    """The noun of the object phrase: a known compound whole, otherwise the head noun."""
    prompt = "a teddy bear to the right of a white washing machine near a blue sleeping bag"
    objs = [r.object_span for r in parse(prompt)]
    assert [prompt[slice(*noun_span(prompt, o))] for o in objs] == ["washing machine", "bag"]


@pytest.mark.parametrize("prompt,expected", [
    ("a wooden desk with a jar of pencils to the left of it", [("jar", "left", "wooden desk")]),
    ("a shelf with a pot of basil above it", [("pot", "above", "shelf")]),
    ("A Shelf with a Pot of Basil to its right", [("Pot", "right", "Shelf")]),
    ("a table with a bowl of fruit on top of it, and a cat under it",
     [("bowl", "above", "table"), ("cat", "below", "table")]),
    # not a container: the noun after "of" is the subject, the pronoun still names the shelf
    ("a shelf with a row of books above it", [("books", "above", "shelf")]),
    ("a shelf with a couple of plants above it", [("plants", "above", "shelf")]),
    # the path these follow
    ("a sofa with a cat sleeping on top of it", [("cat", "above", "sofa")]),
])
def test_of_subject_with_pronoun_object(prompt, expected):
    check(prompt, expected)


@pytest.mark.parametrize("with_it,plain", [
    ("a wooden desk with a jar of pencils to the left of it", "a jar of pencils to the left of a wooden desk"),
    ("a shelf with a pot of basil above it", "a pot of basil above a shelf"),
    ("a shelf with a row of books above it", "a row of books above a shelf"),
])
def test_of_subject_same_with_pronoun(with_it, plain):
    """The pronoun form reads the same subject and object as the form that names the object."""
    assert [(r.subject, r.relation, r.object) for r in parse(with_it)] == [
        (r.subject, r.relation, r.object) for r in parse(plain)]
