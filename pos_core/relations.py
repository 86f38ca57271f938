"""Spatial relations in prompts: "a cat to the left of a dog" -> (cat, left, dog) with character spans.

A small rule-based parser: find relation phrases, then take the noun phrase that ends just before
each phrase as the subject and the one that starts just after it as the object. ComfyUI prompt
syntax (weights, escapes, embeddings) is blanked out first so spans stay offsets into the prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CANONICAL = ("left", "right", "above", "below", "front", "behind", "near")
AXIS_2D = ("left", "right", "above", "below")
DEPTH = ("front", "behind")

# Relation phrases, as regular expressions over lower-case words joined by single spaces.
_SIDE = r"(?:\s+(?:hand\s+)?side|-hand\s+side)?"
_PHRASES: dict[str, list[str]] = {
    "left": [rf"(?:(?:to|on|at|in)\s+(?:the\s+)?(?:far\s+)?)?left{_SIDE}\s+of"],
    "right": [rf"(?:(?:to|on|at|in)\s+(?:the\s+)?(?:far\s+)?)?right{_SIDE}\s+of"],
    "above": [r"on\s+(?:the\s+)?top\s+of", r"at\s+the\s+top\s+of", r"atop", r"above", r"over",
              r"higher\s+than"],
    "below": [r"on\s+(?:the\s+)?bottom\s+of", r"at\s+the\s+bottom\s+of", r"underneath", r"beneath",
              r"below", r"under", r"lower\s+than"],
    "front": [r"in\s+(?:the\s+)?front\s+of"],
    "behind": [r"(?:from\s+)?behind", r"hidden\s+by", r"in\s+(?:the\s+)?back\s+of", r"at\s+the\s+back\s+of",
               r"obscured\s+by", r"occluded\s+by", r"covered\s+by"],
    "near": [r"next\s+to", r"near", r"close\s+to", r"beside", r"alongside", r"adjacent\s+to",
             r"by\s+the\s+side\s+of", r"on\s+(?:the\s+)?side\s+of", r"nearby"],
}

# Every phrase in one alternation, longest alternatives first, each in a named group.
_RELATION_RE = re.compile(
    "|".join(
        rf"(?P<{name}_{i}>\b(?:{pat})\b(?!-))"
        for name, pats in _PHRASES.items()
        for i, pat in enumerate(sorted(pats, key=len, reverse=True))
    )
)

_DETERMINERS = set(
    "a an the this that these those some any each every another my your his her its our their "
    "one two three four five six seven eight nine ten eleven twelve several many few both no".split()
)
# "a couple of cats", "lots of apples": the objects are the noun after "of"
_QUANTITIES = set("couple pair lot lots bunch handful number".split())
# "is", "are", ...: once one is skipped going left, a verb-looking word before it is part of the noun
_BE = set("is are was were be been being am".split())
# "game over screen", "near tears": these short phrases need an article on one side to count
_NEEDS_ARTICLE = {"over", "near"}
_COPULAS = set(
    "is are was were be been being am sits sit sat stands stand stood lies lie lay lying hangs "
    "hang hung rests rest floats float flies fly flew appears appear remains remain stays stay "
    "placed located positioned situated set perched parked seen shown depicted mounted stacked "
    "kept put hidden hides hide grows grow there here which that who whose where also now still "
    "directly just slightly right immediately partially partly completely somewhat far way "
    "clearly only exactly squarely barely then visible out up down off away".split()
)
_STOPS = set(
    "of with and or in on at to from for by into onto while but as near than like without "
    "within through across against toward towards around between among along via per "
    "wearing holding carrying eating playing looking watching reading using riding".split()
)
_PRONOUNS = set("it them him her they he she us we you me itself themselves other others".split())
# Containers: in "a cup of coffee" the cup is the object (but in "a photo of a cat", the cat).
_CONTAINERS = set(
    "cup cups glass glasses mug mugs bowl bowls plate plates basket baskets bottle bottles box boxes jar "
    "jars bag bags bucket buckets pot pots can cans tray trays vase vases crate crates".split()
)
# Nouns that end in -ing, so an -ing word is not always a verb.
_ING_NOUNS = set(
    "building painting ceiling ring king string wing swing spring pudding stuffing bedding "
    "clothing sibling duckling dumpling earring icing lightning railing seedling sling thing "
    "something nothing everything awning dining living ping wedding evening morning fencing "
    "sapling drawing carving sing viking darling stocking wring bearing ceiling".split()
)
# Multi-word nouns whose words all name the object (COCO classes and kin); see `noun_words`.
COMPOUND_NOUNS = set(
    """teddy bear|hot dog|wine glass|cell phone|potted plant|traffic light|fire hydrant|stop sign|
    parking meter|sports ball|baseball bat|baseball glove|tennis racket|dining table|hair drier|
    hair dryer|mobile phone|coffee cup|coffee table|ice cream|fire truck|police car|polar bear|
    street lamp|street light|water bottle|soccer ball|wine bottle|beer bottle|alarm clock|
    picture frame|trash can|garbage can|office chair|arm chair|washing machine|sail boat|
    motor bike|light bulb|tea pot|fire place|book shelf|flower pot|paper towel|toilet paper|
    tennis ball|golf ball|basket ball|guinea pig|sea turtle|hot air balloon|air balloon""".replace(
        "\n", ""
    ).split("|")
)
_COMPOUND_NOUNS = {c.strip() for c in COMPOUND_NOUNS}

_WORD_RE = re.compile(r"[^\W_](?:[\w'\-]*[^\W_])?|[.,;!?|]")
_WEIGHT_RE = re.compile(r":\s*-?\d*\.?\d+\s*(?=\))")
_EMBED_RE = re.compile(r"embedding:\S+|<[^<>]*>")


@dataclass(frozen=True)
class Relation:
    """One "subject relation object" triple with character spans into the original prompt."""

    subject: str
    relation: str
    object: str
    subject_span: tuple[int, int]
    object_span: tuple[int, int]
    phrase_span: tuple[int, int] = (0, 0)

    def to_json(self) -> dict:
        """The contract form of DESIGN.md (no internal fields)."""
        return {
            "subject": self.subject,
            "relation": self.relation,
            "object": self.object,
            "subject_span": list(self.subject_span),
            "object_span": list(self.object_span),
        }


def canonical_relation(name: str) -> str:
    """Map a canonical name or a phrase ("to the left of", "Hidden by") to a canonical name."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"relation must be a non-empty string, got {name!r}; use one of {CANONICAL}")
    text = " ".join(name.lower().replace("_", " ").split())
    if text in CANONICAL:
        return text
    aliases = {"top": "above", "bottom": "below", "in front": "front", "back": "behind",
               "left of": "left", "right of": "right", "next": "near"}
    if text in aliases:
        return aliases[text]
    for m in _RELATION_RE.finditer(text):
        if m.start() == 0 and m.end() == len(text):
            return _group_relation(m)
    raise ValueError(
        f"unknown relation {name!r}: use one of {', '.join(CANONICAL)} or a phrase such as "
        "'to the left of', 'above', 'in front of'"
    )


def clean_prompt(prompt: str) -> str:
    """Blank out ComfyUI prompt syntax (weights, brackets, escapes, embeddings) keeping offsets."""
    out = _EMBED_RE.sub(lambda m: " " * len(m.group()), prompt)
    out = _WEIGHT_RE.sub(lambda m: " " * len(m.group()), out)
    return re.sub(r"[()\[\]{}\\]", " ", out)


def noun_words(phrase: str) -> list[str]:
    """The words of a noun phrase that name the object: the head noun, or a known compound.

    "red car" -> ["car"]; "fluffy teddy bear" -> ["teddy", "bear"]. Their CLIP tokens are the
    ones whose attention stands for the object (see `pos_core.tokens`).
    """
    words = phrase.split()
    for n in (3, 2):
        if len(words) >= n:
            tail = words[-n:]
            singular = tail[:-1] + [re.sub(r"(?<=[^s])s$|(?<=[sx]h)es$|(?<=ss)es$", "", tail[-1])]
            if " ".join(tail) in _COMPOUND_NOUNS or " ".join(singular) in _COMPOUND_NOUNS:
                return tail
    return words[-1:]


def noun_span(prompt: str, span: tuple[int, int]) -> tuple[int, int]:
    """Character span of the noun (`noun_words`) of the noun phrase at `span` of `prompt`."""
    words = _tokenize(clean_prompt(prompt)[span[0]:span[1]])
    words = [w for w in words if w[0][0].isalnum()]
    if not words:
        raise ValueError(f"no words at {span} of {prompt!r}")
    n = len(noun_words(" ".join(w for w, _, _ in words)))
    return span[0] + words[-n][1], span[0] + words[-1][2]


def _group_relation(m: re.Match) -> str:
    return next(k for k, v in m.groupdict().items() if v is not None).rsplit("_", 1)[0]


def _is_verbish(word: str) -> bool:
    return word in _COPULAS or (word.endswith("ing") and len(word) > 4 and word not in _ING_NOUNS)


def _tokenize(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def _np_left(words, end: int, floor: int) -> tuple[int, int] | None:
    """Word range [i, end) of the noun phrase ending at word `end` (exclusive), or None."""
    i, seen_be = end, False
    while i > floor:
        w = words[i - 1][0]
        participle = (w.endswith("ed") and len(w) > 4 and i - 2 >= floor and words[i - 2][0][0].isalnum()
                      and words[i - 2][0] not in _DETERMINERS)
        if seen_be and w not in _BE and not w.endswith("ing") and w not in ("there", "which", "that", "who"):
            break  # "the umbrella stand was": "stand" is part of the noun
        if not (_is_verbish(w) or participle):
            break
        seen_be = seen_be or w in _BE
        i -= 1
    stop = i
    while i > floor:
        w = words[i - 1][0]
        verb = w in _COPULAS and not (seen_be and w not in _BE)  # after "was", "stand" is a noun
        if not w[0].isalnum() or w in _DETERMINERS or w in _STOPS or verb or w.isdigit():
            break
        i -= 1
    if i < stop and i - 2 >= floor and words[i - 1][0] == "of" and words[i - 2][0] in _CONTAINERS:
        return _np_left(words, i - 1, floor)  # "a cup of coffee": the cup
    j = i - 1 if i - 1 >= floor and words[i - 1][0] in _DETERMINERS else i
    if i < stop and j - 1 >= floor and words[j - 1][0] in ("with", "wearing", "holding", "carrying"):
        owner = _np_left(words, j - 1, floor)  # "a man with a hat left of ...": the man
        if owner is not None:
            return owner
    return (i, stop) if i < stop else None


def _np_right(words, start: int, ceil: int) -> tuple[int, int] | None:
    """Word range [start', j) of the noun phrase starting at word `start`, or None."""
    i = start
    while i < ceil and (words[i][0] in _DETERMINERS or words[i][0].isdigit()):
        i += 1
    if i + 1 < ceil and words[i][0] in _QUANTITIES and words[i + 1][0] == "of":  # "a couple of"
        i += 2
        while i < ceil and words[i][0] in _DETERMINERS:
            i += 1
    j = i
    while j < ceil:
        w = words[j][0]
        participle = j == i and j + 1 < ceil and words[j + 1][0][0].isalnum() and w.endswith("ed")
        if not w[0].isalnum() or w in _DETERMINERS or w in _STOPS or (w in _COPULAS and not participle):
            break
        if j > i and _is_verbish(w):
            break
        j += 1
    return (i, j) if i < j else None


def _span(words, rng) -> tuple[int, int]:
    return words[rng[0]][1], words[rng[1] - 1][2]


def _phrase(words, rng) -> str:
    return " ".join(w for w, _, _ in words[rng[0]:rng[1]])


def parse(prompt: str) -> list[Relation]:
    """All spatial relations of a prompt, in order of appearance; [] when there are none."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
    text = clean_prompt(prompt)
    words = _tokenize(text)
    joined, starts = "", []
    for w, _, _ in words:
        starts.append(len(joined))
        joined += w + " "
    index_of = {s: i for i, s in enumerate(starts)}

    found = []
    for m in _RELATION_RE.finditer(joined):
        if m.start() not in index_of:
            continue
        ws = index_of[m.start()]
        we = ws + len(m.group().split())
        found.append((ws, we, _group_relation(m)))

    out: list[Relation] = []
    last_subject, last_object_end = None, -1
    for k, (ws, we, rel) in enumerate(found):
        floor = found[k - 1][1] if k else 0
        ceil = found[k + 1][0] if k + 1 < len(found) else len(words)
        subj = _np_left(words, ws, floor)
        obj = _np_right(words, we, ceil)
        if obj is None:
            continue
        if subj is None and ws > 0 and words[ws - 1][0] == "and" and last_object_end == ws - 1:
            subj = last_subject  # "a cat under a table and next to a chair": the cat again
        if subj is None:  # inverted: "to the right of a book is a candle", "behind the fence, a horse"
            i = obj[1]
            if i < ceil and words[i][0] == ",":
                i += 1
            while i < ceil and _is_verbish(words[i][0]):
                i += 1
            if i == obj[1]:
                continue
            subj = _np_right(words, i, ceil)
            if subj is None:
                continue
        if words[ws][0] in _NEEDS_ARTICLE and we - ws == 1 and not any(
                r[0] - 1 >= 0 and words[r[0] - 1][0] in _DETERMINERS for r in (subj, obj)):
            continue
        s, o = _phrase(words, subj), _phrase(words, obj)
        if s.split()[-1] in _PRONOUNS or o.split()[-1] in _PRONOUNS:
            continue
        last_subject, last_object_end = subj, obj[1]
        out.append(
            Relation(
                subject=s,
                relation=rel,
                object=o,
                subject_span=_span(words, subj),
                object_span=_span(words, obj),
                phrase_span=(words[ws][1], words[we - 1][2]),
            )
        )
    return out
