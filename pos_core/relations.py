"""Spatial relations in prompts: "a cat to the left of a dog" -> (cat, left, dog) with character spans.

A small rule-based parser: find relation phrases, then take the noun phrase that ends just before
each phrase as the subject and the one that starts just after it as the object. ComfyUI prompt
syntax (weights, escapes, embeddings) is blanked out first so spans stay offsets into the prompt.
Also read: a comma or a relative clause between subject and phrase ("a bird, which is above a
tree"), a pronoun object naming the noun the subject is attached to ("a table with a lamp above
it"), and two objects placed by sides ("a cat on the left and a dog on the right": cat left of dog).
After adjectives an -ing word belongs to the noun ("a blue sleeping bag"); after a noun it is a verb.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CANONICAL = ("left", "right", "above", "below", "front", "behind", "near")
AXIS_2D = ("left", "right", "above", "below")
DEPTH = ("front", "behind")

# Relation phrases, as regular expressions over lower-case words joined by single spaces.
_SIDE = r"(?:\s+(?:hand\s+)?side|-hand\s+side)?"
# "to its right", "on their left side": the object is a pronoun (only when nothing follows but a break)
_POSS = r"(?:to|on|at)\s+(?:its|their|his|her)\s+(?:far\s+)?"
_BREAK = r"(?=\s+(?:[,.;:!?|]|and\b|while\b|but\b|whereas\b)|\s*$)"
_PHRASES: dict[str, list[str]] = {
    "left": [rf"(?:(?:to|on|at|in)\s+(?:the\s+)?(?:far\s+)?)?left{_SIDE}\s+of", rf"{_POSS}left{_SIDE}{_BREAK}"],
    "right": [rf"(?:(?:to|on|at|in)\s+(?:the\s+)?(?:far\s+)?)?right{_SIDE}\s+of", rf"{_POSS}right{_SIDE}{_BREAK}"],
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
# Adjectives: after only these, an -ing word names a kind of the noun ("a white washing machine");
# see `_is_adjective`, which also reads endings ("wooden", "striped", "colourful").
_ADJECTIVES = set(
    "red blue green yellow orange purple pink brown black white gray grey silver gold golden beige teal "
    "cyan violet maroon navy turquoise crimson dark light pale bright colorful colourful striped spotted "
    "small large big tiny huge giant little tall short long wide narrow thin thick fat round square flat "
    "old new young ancient modern vintage antique retro wooden wood metal metallic plastic glass stone "
    "leather wool woolen woollen cotton silk paper steel iron brass copper ceramic marble rubber "
    "shiny fluffy fuzzy furry soft hard cute pretty beautiful ugly dirty clean empty full broken rusty "
    "dusty muddy wet dry hot cold warm cozy cosy heavy electric portable cheap fancy plain simple "
    "wild tame happy sad lazy busy quiet noisy fast slow".split()
)
_PRONOUNS = set("it them him her they he she us we you me itself themselves other others".split())
# Object pronouns that name an earlier noun: "a table with a lamp above it"
_OBJ_PRONOUNS = set("it them him her itself themselves".split())
_POSSESSIVES = set("its their his her".split())
# What joins the noun a pronoun names to the subject: "a table with a lamp", "a tower and a hut"
_ATTACH = set("with and , ; having featuring plus".split())
# Prepositions: a noun phrase after one is not the subject of a relation after a comma
# ("in a garden, behind a fence, a horse": the horse, not the garden)
_PREPOSITIONS = set(
    "in on at into onto from under inside through across against toward towards around among along "
    "during for to by near over behind beside above below with without within between".split()
)
_RELATIVE = set("which that who".split())
# Nouns that name the picture itself: "at the top of the image" places an object, it is no relation
_FRAMES = set("image picture frame photo photograph scene canvas composition shot view".split())
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

_WORD_RE = re.compile(r"[^\W_](?:[\w'\-]*[^\W_])?|[.,;:!?|]")
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


def _is_adjective(word: str) -> bool:
    """Whether `word` reads as an adjective: a known one ("blue", "dark-red") or by its ending ("striped")."""
    last = word.rsplit("-", 1)[-1]
    return last in _ADJECTIVES or (len(last) > 4 and last.endswith(("ed", "ful", "ous", "less")))


def _ing_modifier(words, i: int, j: int, ceil: int) -> bool:
    """Whether the -ing word `j` names a kind of the noun after it, with only adjectives from word `i`.

    "a blue [sleeping] bag", "a small red [fishing] boat"; not "a dog [sleeping] on a mat".
    """
    w = words[j][0]
    if not w.endswith("ing") or w in _COPULAS or w in _STOPS or j + 1 >= ceil:
        return False
    nxt = words[j + 1][0]
    if (not nxt[0].isalnum() or nxt.isdigit() or _is_verbish(nxt)
            or any(nxt in s for s in (_DETERMINERS, _STOPS, _COPULAS, _PRONOUNS, _PREPOSITIONS))):
        return False
    return all(_is_adjective(words[k][0]) for k in range(i, j))


def _tokenize(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def _skip_relative(words, end: int, floor: int) -> int:
    """Start of a relative clause verb before word `end` ("a balloon [that drifts] over"), else `end`."""
    for k in range(end - 1, max(floor, end - 4) - 1, -1):
        if words[k][0] in _RELATIVE:
            between = [w for w, _, _ in words[k + 1:end]]
            plain = all(w[0].isalnum() and not w.isdigit() and w not in _DETERMINERS and w not in _STOPS
                        for w in between)
            return k if plain else end
    return end


def _np_left(words, end: int, floor: int, owner: bool = True) -> tuple[int, int] | None:
    """Word range [i, end) of the noun phrase ending at word `end` (exclusive), or None.

    With `owner`, "a man with a hat" gives the man; without, the hat.
    """
    i, seen_be = _skip_relative(words, end, floor), False
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
        return _np_left(words, i - 1, floor, owner)  # "a cup of coffee": the cup
    j = i - 1 if i - 1 >= floor and words[i - 1][0] in _DETERMINERS else i
    if owner and i < stop and j - 1 >= floor and words[j - 1][0] in ("with", "wearing", "holding", "carrying"):
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
        if j > i and _is_verbish(w) and not _ing_modifier(words, i, j, ceil):
            break  # "a dog sleeping": a verb; "a blue sleeping bag": a noun
        j += 1
    return (i, j) if i < j else None


def _span(words, rng) -> tuple[int, int]:
    return words[rng[0]][1], words[rng[1] - 1][2]


def _phrase(words, rng) -> str:
    return " ".join(w for w, _, _ in words[rng[0]:rng[1]])


def _start_of_clause(words, ws: int, floor: int) -> int:
    """Index before the verbs and relative pronoun that precede a relation phrase at `ws`."""
    k = _skip_relative(words, ws, floor)
    while k > floor and _is_verbish(words[k - 1][0]):
        k -= 1
    return k


def _preposition_before(words, rng) -> int | None:
    """Index of the preposition the noun phrase at word range `rng` follows ("in a garden"), or None."""
    i = rng[0]
    while i > 0 and (words[i - 1][0] in _DETERMINERS or words[i - 1][0].isdigit()):
        i -= 1
    return i - 1 if i > 0 and words[i - 1][0] in _PREPOSITIONS else None


def _pronoun_at(words, k: int) -> bool:
    """Whether word `k` is an object pronoun standing alone ("above it", not "over her head")."""
    if k >= len(words) or words[k][0] not in _OBJ_PRONOUNS:
        return False
    nxt = words[k + 1][0] if k + 1 < len(words) else ","
    return not nxt[0].isalnum() or nxt in ("and", "while", "but", "whereas", "with")


def _antecedent(words, subj, last_end: int = -1) -> tuple[int, int] | None:
    """The noun phrase a pronoun object names: the one the subject is attached to by "with" / "and".

    Returns (-1, -1) when the subject is attached right after the last relation (`last_end`):
    "... to its left and a bus to its right" names the same noun again.
    """
    j = subj[0]
    while j > 0 and (words[j - 1][0] in _DETERMINERS or words[j - 1][0].isdigit()):
        j -= 1
    if j > 1 and words[j - 1][0] == "of":  # "a shelf with a row of books above it": past "a row of"
        head = _np_left(words, j - 1, 0, owner=False)
        j = head[0] if head is not None else j
        while j > 0 and (words[j - 1][0] in _DETERMINERS or words[j - 1][0].isdigit()):
            j -= 1
    if j == 0 or words[j - 1][0] not in _ATTACH:
        return None
    c = j - 1
    if words[c][0].isalnum() and c > 0 and words[c - 1][0] == ",":
        c -= 1  # "a tower, and a hut beside it", "a table, with a vase on it"
    if c == last_end:
        return -1, -1
    np = _np_left(words, c, 0)
    return None if np is None or words[np[1] - 1][0] in _SIDE_RELATION else np  # not "in front, ... him"


# Placements by side: "on the left", "at the top", "in the background", a bare "above", "left:".
_PLACE_PATTERNS = (
    (r"(?:to|on|at|in)\s+(?:the\s+)?(?:far\s+|very\s+)?(left|right)"
     r"(?:\s+(?:hand\s+)?side|-hand\s+side|\s+half|\s+part)?", "phrase"),
    (r"(?:at|on|in)\s+(?:the\s+)?(?:very\s+)?(top|bottom)(?:\s+(?:side|half|part))?", "phrase"),
    (r"(?:at|on|in)\s+the\s+(upper|lower)\s+(?:half|part|side|area|portion)", "phrase"),
    (r"in\s+the\s+(foreground|background)", "phrase"),
    (r"in\s+(?:the\s+)?(front|back)", "phrase"),
    (r"(above|below|beneath|underneath|behind)", "adverb"),
)
_PLACE_RES = [(re.compile(rf"\b(?:{pat})\b(?!-)(?!\s+of\b)"), kind) for pat, kind in _PLACE_PATTERNS]
_LABEL_RE = re.compile(r"\b(left|right|top|bottom|foreground|background)(?:\s+side)?\s+:")
_SIDE_RELATION = {"left": "left", "right": "right", "top": "above", "upper": "above", "above": "above",
                  "bottom": "below", "lower": "below", "below": "below", "beneath": "below",
                  "underneath": "below", "foreground": "front", "front": "front", "background": "behind",
                  "back": "behind", "behind": "behind"}
_AXIS = {"left": "x", "right": "x", "above": "y", "below": "y", "front": "z", "behind": "z"}
_CONJ = set("and while whereas but with".split())


def _placements(words, joined: str, index_of: dict, frames: list, phrase_starts: set[int]
                ) -> list[tuple[int, int, str, str]]:
    """Side placements (start word, end word, relation, kind), in order; `frames` adds "... of the image"."""
    out = list(frames)
    for rx, kind in [*_PLACE_RES, (_LABEL_RE, "label")]:
        for m in rx.finditer(joined):
            if m.start() not in index_of:
                continue
            ws = index_of[m.start()]
            we = ws + len(m.group().split())
            nxt = words[we][0] if we < len(words) else "."
            brk = not nxt[0].isalnum() or nxt in _CONJ or we in phrase_starts
            if kind == "label" and (ws == 0 or not words[ws - 1][0][0].isalnum()):
                out.append((ws, we, _SIDE_RELATION[m.group(1)], kind))
            elif kind == "adverb" and brk:
                out.append((ws, we, _SIDE_RELATION[m.group(1)], kind))
            elif kind == "phrase" and (brk or nxt in _DETERMINERS or nxt.isdigit() or _is_verbish(nxt)):
                out.append((ws, we, _SIDE_RELATION[m.group(1)], kind))
    out.sort()
    return [p for k, p in enumerate(out) if not (k and p[0] < out[k - 1][1])]


def _side_relations(words, places, barriers: list[tuple[int, int]]) -> tuple[list[Relation], dict[int, tuple]]:
    """Pair placements on one axis with opposite sides: "X on the left and Y on the right" -> X left of Y.

    Also returns the noun phrase of each placement by its end word ("a cat on the left | under a table").
    """
    attached = []  # (placement, noun phrase range)
    used_end = 0
    for k, (ws, we, rel, kind) in enumerate(places):
        floor = max([used_end, places[k - 1][1] if k else 0] + [e for _, e in barriers if e <= ws])
        ceil = min([len(words), places[k + 1][0] if k + 1 < len(places) else len(words)]
                   + [b for b, _ in barriers if b >= we])
        before = _np_left(words, ws, floor) if kind != "label" else None
        after = None
        if kind != "adverb":
            i = we
            while i < ceil and words[i][0] in (",", ":"):
                i += 1
            while i < ceil and _is_verbish(words[i][0]):
                i += 1
            at_start = ws == floor or not words[ws - 1][0][0].isalnum() or words[ws - 1][0] in _CONJ
            after = _np_right(words, i, ceil) if at_start else None
        if before is None and after is None and kind != "label" and ws - 1 > floor and words[ws - 1][0] == ",":
            before = _np_left(words, ws - 1, floor)  # "a cat, on the left, and ..."
        np = before or after
        if np is None or _phrase(words, np).split()[-1] in _PRONOUNS:
            continue
        attached.append(((ws, we, rel, kind), np))
        used_end = max(used_end, np[1])
    out = []
    pending: dict[str, tuple] = {}
    for place, np in attached:
        axis = _AXIS[place[2]]
        first = pending.pop(axis, None)
        if first is None or first[0][2] == place[2]:
            pending[axis] = (place, np)
            continue
        (ws, we, rel, _), subj = first
        out.append(Relation(subject=_phrase(words, subj), relation=rel, object=_phrase(words, np),
                            subject_span=_span(words, subj), object_span=_span(words, np),
                            phrase_span=(words[ws][1], words[we - 1][2])))
    return out, {place[1]: np for place, np in attached}


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
        found.append((ws, we, _group_relation(m), any(w in _POSSESSIVES for w in m.group().split()[1:2])))

    # "at the top of the image": a placement by side, not a relation to an object
    frames, kept = [], []
    for k, (ws, we, rel, poss) in enumerate(found):
        ceil = found[k + 1][0] if k + 1 < len(found) else len(words)
        obj = _np_right(words, we, ceil) if rel in AXIS_2D and not poss else None
        if obj is not None and _phrase(words, obj) in _FRAMES and words[obj[0] - 1][0] in ("the", "this"):
            frames.append((ws, obj[1], rel, "phrase"))
        else:
            kept.append((ws, we, rel, poss))
    found = kept

    places = _placements(words, joined, index_of, frames, {ws for ws, _, _, _ in found})
    side_out, placed = _side_relations(words, places, [(ws, we) for ws, we, _, _ in found])

    out: list[Relation] = []
    last_subject, last_object_end, last_antecedent, last_pronoun_end = None, -1, None, -1
    for k, (ws, we, rel, poss) in enumerate(found):
        floor = max([found[k - 1][1] if k else 0] + [p[1] for p in places if p[1] <= ws])
        ceil = found[k + 1][0] if k + 1 < len(found) else len(words)
        if poss or _pronoun_at(words, we):  # "a table with a lamp above it", "a sofa with a lamp to its right"
            subj = _np_left(words, ws, floor, owner=False)
            obj = _antecedent(words, subj, last_pronoun_end) if subj is not None else None
            if obj == (-1, -1) or obj is not None and _phrase(words, obj).split()[-1] in _PRONOUNS:
                obj = last_antecedent  # "... in front of it and a tree behind it"
            if obj is None or subj is None:
                continue
            last_antecedent, last_subject = obj, subj
            last_object_end = last_pronoun_end = we + (not poss)
            s, o = _phrase(words, subj), _phrase(words, obj)
            if s.split()[-1] in _PRONOUNS:
                continue
            out.append(Relation(subject=s, relation=rel, object=o, subject_span=_span(words, subj),
                                object_span=_span(words, obj), phrase_span=(words[ws][1], words[we - 1][2])))
            continue
        subj = _np_left(words, ws, floor)
        obj = _np_right(words, we, ceil)
        if obj is None:
            continue
        if subj is None and ws > 0 and words[ws - 1][0] == "and" and last_object_end == ws - 1:
            subj = last_subject  # "a cat under a table and next to a chair": the cat again
        inverted, strong = None, False  # "to the right of a book is a candle", "behind the fence, a horse"
        if subj is None:
            i = obj[1]
            comma = i < ceil and words[i][0] == ","
            i += comma
            while i < ceil and _is_verbish(words[i][0]):
                i, strong = i + 1, not comma  # "... a book is a candle", not "..., holding a rake"
            if i != obj[1]:
                inverted = _np_right(words, i, ceil)
        if subj is None and not (inverted is not None and strong):
            c = _start_of_clause(words, ws, floor)  # "a chair, to the left of a table", "a bird, which is above"
            if c in placed:
                subj = placed[c]  # "a cat on the left under a table": the cat
            elif c - 1 >= floor and words[c - 1][0] == ",":
                left = _np_left(words, c - 1, floor)
                prep = _preposition_before(words, left) if left is not None else None
                if prep is not None and prep > floor:  # "a cat sitting on a mat, next to a dog": the cat
                    left = _np_left(words, prep, floor)
                    prep = _preposition_before(words, left) if left is not None else None
                if left is not None and left[1] == last_object_end and last_subject is not None:
                    subj = last_subject  # "a lamp on a desk, next to a window": the lamp again
                elif left is not None and prep is None and any(
                        r[0] > 0 and (words[r[0] - 1][0] in _DETERMINERS or words[r[0] - 1][0].isdigit())
                        for r in (left, obj)):
                    subj = left  # an article on one side: not "best quality, above average detail"
        subj = subj or inverted
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
    if side_out:
        out = sorted(out + side_out, key=lambda r: r.phrase_span[0])
    return out
