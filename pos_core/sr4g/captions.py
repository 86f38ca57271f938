"""SR4G captions: "<subject> <relation phrase> <object>", with articles, number words and plurals.

SR4G builds its captions from templates (abstract and dataset description); the form used here is
"a dog to the left of a cat" (VISOR's prompt form, our choice of wording); counts
above one become number words ("two dogs"), so the caption stays true when an image holds several
instances of a class (our choice where the paper is silent).
"""

from __future__ import annotations

PHRASE = {
    "left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below",
    "surrounding": "surrounding", "inside": "inside", "overlapping": "overlapping",
    "separated": "separated from", "wider": "wider than", "narrower": "narrower than",
    "taller": "taller than", "shorter": "shorter than", "larger": "larger than", "smaller": "smaller than",
}
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
# COCO names whose plural is not "+s"/"+es", and names that are plural already ("a pair of ...").
IRREGULAR = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis",
             "scissors": "scissors", "wine glass": "wine glasses", "bus": "buses", "bench": "benches",
             "sandwich": "sandwiches", "couch": "couches", "toothbrush": "toothbrushes", "glass": "glasses",
             "box": "boxes", "dish": "dishes", "leaf": "leaves", "shelf": "shelves", "wolf": "wolves",
             "child": "children", "man": "men", "woman": "women", "foot": "feet", "tooth": "teeth",
             "goose": "geese", "deer": "deer", "fish": "fish"}
PAIRS = {"skis", "scissors", "glasses", "pants", "jeans", "shorts", "trousers"}
# Vowel letters that sound like consonants, and silent h.
_A_EXCEPTIONS = ("uni", "use", "eu", "one", "ukulele")
_AN_EXCEPTIONS = ("hour", "honest", "honor", "heir")


def plural(noun: str) -> str:
    """English plural of a (possibly multi-word) noun: the last word changes."""
    noun = noun.strip()
    if noun in IRREGULAR:
        return IRREGULAR[noun]
    head, _, last = noun.rpartition(" ")
    if last in IRREGULAR:
        p = IRREGULAR[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        p = last + "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


def article(word: str) -> str:
    """"a" or "an" for the word that follows."""
    w = word.lower()
    if w.startswith(_AN_EXCEPTIONS):
        return "an"
    if w.startswith(_A_EXCEPTIONS):
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def noun_phrase(name: str, count: int = 1) -> str:
    """"a dog", "an apple", "two dogs", "a pair of skis", "two pairs of skis"."""
    name = name.strip()
    if name in PAIRS:
        return f"a pair of {name}" if count == 1 else f"{NUMBERS.get(count, str(count))} pairs of {name}"
    if count == 1:
        return f"{article(name)} {name}"
    return f"{NUMBERS.get(count, str(count))} {plural(name)}"


def caption(subject: str, relation: str, obj: str, subject_count: int = 1, object_count: int = 1) -> str:
    """The SR4G caption of one triplet, e.g. caption("dog", "left of", "cat") -> "a dog to the left of a cat"."""
    if relation not in PHRASE:
        raise ValueError(f"unknown SR4G relation {relation!r}: use one of {', '.join(PHRASE)}")
    return f"{noun_phrase(subject, subject_count)} {PHRASE[relation]} {noun_phrase(obj, object_count)}"
