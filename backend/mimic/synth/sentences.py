"""Sentences for the synthetic voices: a small grammar over words from the pronunciation
dictionary, rich in lip closures (p, b, m), rounding (o, u, w) and spreading (i, e)."""

from __future__ import annotations

import numpy as np

NAMES = ["Bob", "Paul", "Mary", "Emma", "Peter", "Ruby", "Owen", "Lucy", "Mabel", "Hugo", "Molly", "Tom", "Sue",
         "Bill", "Rosa", "Pam", "Luke", "Nina"]
RELATIONS = ["mother", "brother", "father", "neighbor", "uncle", "teacher", "cousin", "boss"]
VERBS = [("move", "moved"), ("bring", "brought"), ("paint", "painted"), ("keep", "kept"), ("push", "pushed"),
         ("pull", "pulled"), ("wash", "washed"), ("open", "opened"), ("fix", "fixed"), ("buy", "bought"),
         ("borrow", "borrowed"), ("carry", "carried"), ("choose", "chose"), ("lose", "lost"), ("find", "found"),
         ("fold", "folded"), ("weigh", "weighed"), ("show", "showed"), ("hide", "hid"), ("sweep", "swept")]
ADJECTIVES = ["blue", "big", "cheap", "deep", "smooth", "purple", "brown", "green", "warm", "soft", "old", "small",
              "heavy", "empty", "bright", "yellow", "broken", "shiny", "tiny", "wooden"]
NOUNS = [("boat", "boats"), ("box", "boxes"), ("map", "maps"), ("book", "books"), ("lamp", "lamps"),
         ("spoon", "spoons"), ("broom", "brooms"), ("pumpkin", "pumpkins"), ("blanket", "blankets"),
         ("shoe", "shoes"), ("bottle", "bottles"), ("paper", "papers"), ("window", "windows"),
         ("umbrella", "umbrellas"), ("bucket", "buckets"), ("pillow", "pillows"), ("mirror", "mirrors"),
         ("piano", "pianos"), ("basket", "baskets"), ("wheel", "wheels")]
PLACES = ("near the pool", "by the window", "under the bridge", "behind the museum", "on the beach",
          "at the market", "beside the road", "in the garden", "up the hill", "from the moon")
TIMES = ("this morning", "before noon", "every Monday", "by tomorrow", "on Tuesday", "after lunch",
         "at midnight", "last week", "in the evening", "before the show", "at seven")
NUMBERS = ["two", "three", "four", "five", "seven", "nine", "some", "many", "a few"]
RESTING = ("stayed", "appeared", "remained", "was found", "was left", "waited")

TEMPLATES = (
    "{Name} {past} the {adj} {noun} {place}.",
    "Please {verb} the {adj} {noun} before {time2}.",
    "Why did {Name} {verb} {num} {adj} {nouns}?",
    "The {adj} {noun} {rest} {place} {time}.",
    "{Name} and {Name2} {past} {num} {nouns} {time}.",
    "My {relation} will {verb} the {adj} {noun} {time}.",
    "We should {verb} the {noun} and the {noun2} {time}.",
    "Maybe the {adj} {noun} is {place}.",
    "Did your {relation} {verb} the {noun} {place}?",
)


def generate(count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct sentences of 5 to 11 words."""
    out: list[str] = []
    seen = set()
    for _ in range(count * 200):
        if len(out) == count:
            break
        pick = lambda xs: xs[int(rng.integers(len(xs)))]
        verb, noun, noun2 = pick(VERBS), pick(NOUNS), pick(NOUNS)
        name, name2 = pick(NAMES), pick(NAMES)
        if name2 == name or noun2 == noun:
            continue
        text = pick(TEMPLATES).format(
            Name=name, Name2=name2, verb=verb[0], past=verb[1], adj=pick(ADJECTIVES), noun=noun[0], nouns=noun[1],
            noun2=noun2[0], place=pick(PLACES), time=pick(TIMES), time2=pick(TIMES).split(" ", 1)[-1],
            num=pick(NUMBERS), relation=pick(RELATIONS), rest=pick(RESTING))
        if text not in seen and 5 <= len(text.split()) <= 11:
            seen.add(text)
            out.append(text)
    assert len(out) == count, f"the grammar gave only {len(out)} distinct sentences"
    return out


def vocabulary() -> set[str]:
    """Every word the grammar can produce (lower case)."""
    words = set()
    for group in (NAMES, RELATIONS, ADJECTIVES, NUMBERS, PLACES, TIMES, RESTING, TEMPLATES):
        for item in group:
            words.update(item.lower().replace("{", " ").replace("}", " ").replace(".", " ").replace("?", " ").split())
    for pairs in (VERBS, NOUNS):
        for a, b in pairs:
            words.update((a, b))
    return {w for w in words if w.isalpha()} - {
        "name", "name2", "past", "adj", "noun", "noun2", "nouns", "verb", "place", "time", "time2", "num",
        "relation", "rest"}
