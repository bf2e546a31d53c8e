"""SYNTHETIC text data, generated from a seed: product reviews of two domains and a small instruction set.

No package ships a text corpus with a domain shift, so the offline defaults are generated here. They
are *not* real reviews: sentences are drawn from templates. Design of the review task:
- two product families ("books", "electronics") with their own vocabulary (aspects, and sentiment
  phrases only that family uses: "a real page-turner", "the battery dies within an hour"), plus
  sentiment words shared by both ("excellent", "awful") - a shared signal and a domain shift;
- difficulty: neutral filler sentences, a contrasting clause with the opposite sentiment in a third of
  the reviews ("..., but the ending was awful"), negated phrases ("not worth it") and 5 % label noise,
  so that no method reaches 100 % and strategies can be told apart.
"""

from __future__ import annotations

import numpy as np

CLASSES = ["negative", "positive"]
SHARED = {
    1: ["excellent", "great", "wonderful", "fantastic", "superb", "really good", "impressive", "delightful"],
    0: ["terrible", "awful", "disappointing", "poor", "bad", "dreadful", "mediocre", "frustrating"],
}
NEGATED = {1: ["not bad at all", "never disappointing"], 0: ["not worth it", "not good at all", "never satisfying"]}
DOMAINS = {
    "books": {
        "items": ["novel", "book", "paperback", "memoir", "thriller", "story collection", "biography", "mystery"],
        "aspects": ["plot", "writing", "characters", "ending", "pacing", "dialogue", "prose", "translation"],
        1: ["a real page-turner", "I could not put it down", "the characters felt alive", "beautifully written"],
        0: ["the plot drags on", "I gave up halfway", "the characters are flat", "full of clumsy sentences"],
        "filler": [
            "I read it over the holidays.",
            "It has about three hundred pages.",
            "My book club picked it.",
            "The cover shows an old lighthouse.",
            "It is the second book of a series.",
        ],
    },
    "electronics": {
        "items": ["laptop", "headphones", "phone charger", "tablet", "camera", "speaker", "keyboard", "smartwatch"],
        "aspects": ["battery", "screen", "sound", "build quality", "setup", "connectivity", "software", "charging"],
        1: [
            "the battery lasts for days",
            "works perfectly out of the box",
            "crisp and clear sound",
            "fast and reliable",
        ],
        0: [
            "the battery dies within an hour",
            "it overheats constantly",
            "stopped working after a week",
            "the screen flickers",
        ],
        "filler": [
            "I use it mostly at work.",
            "It came in a small box.",
            "I bought it during a sale.",
            "It is the black model.",
            "Shipping took four days.",
        ],
    },
}


def reviews(
    domain: str, n_per_class: int = 500, seed: int = 0, label_noise: float = 0.05
) -> tuple[list[str], np.ndarray]:
    """`n_per_class` reviews per sentiment of one domain: (texts, labels with 1 = positive).

    Deterministic given (domain, n_per_class, seed, label_noise).
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown review domain '{domain}'; choose from {sorted(DOMAINS)}")
    d = DOMAINS[domain]
    rng = np.random.default_rng([seed, list(DOMAINS).index(domain)])
    pick = lambda xs: xs[rng.integers(len(xs))]
    texts, labels = [], []
    for y in np.repeat([0, 1], n_per_class):
        item, aspect = pick(d["items"]), pick(d["aspects"])
        parts = [pick(d["filler"])] if rng.random() < 0.5 else []
        cue = rng.random()
        if cue < 0.4:
            parts.append(f"The {aspect} of this {item} is {pick(SHARED[y])}.")
        elif cue < 0.8:
            parts.append(f"This {item}: {pick(d[y])}.")
        else:
            parts.append(f"Honestly, this {item} is {pick(NEGATED[y])}.")
        if rng.random() < 0.35:  # a contrasting remark about another aspect
            parts.append(f"Still, the {pick(d['aspects'])} was {pick(SHARED[1 - y])}.")
        elif rng.random() < 0.5:
            parts.append(f"Overall {pick(SHARED[y])}, {pick(d[y])}.")
        if rng.random() < 0.5:
            parts.append(pick(d["filler"]))
        texts.append(" ".join(parts))
        labels.append(1 - y if rng.random() < label_noise else y)
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], np.asarray(labels, dtype=np.int64)[order]


COLOURS_FR = {
    "red": "rouge",
    "blue": "bleu",
    "green": "vert",
    "black": "noir",
    "white": "blanc",
    "yellow": "jaune",
    "grey": "gris",
    "pink": "rose",
    "orange": "orange",
    "brown": "marron",
}
OPPOSITES = {
    "hot": "cold",
    "big": "small",
    "fast": "slow",
    "early": "late",
    "open": "closed",
    "light": "dark",
    "happy": "sad",
    "up": "down",
    "full": "empty",
    "old": "young",
    "rich": "poor",
    "strong": "weak",
}
TASKS = ["sentiment", "addition", "french_colour", "opposite", "uppercase"]


def instructions(n_per_task: int = 60, seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    """A small SYNTHETIC instruction set with one short correct answer per prompt.

    Five task families (`TASKS`): review sentiment, adding two numbers, a colour's French name, a
    word's opposite, writing a word in capitals. Returns (prompts, responses, task ids).
    """
    rng = np.random.default_rng(seed)
    texts, ys = reviews("books", n_per_class=n_per_task, seed=seed + 1, label_noise=0.0)
    words = list(OPPOSITES) + list(COLOURS_FR)
    prompts, responses, tasks = [], [], []
    for t, task in enumerate(TASKS):
        for i in range(n_per_task):
            if task == "sentiment":
                p, r = f"Is this review positive or negative? Answer with one word.\nReview: {texts[i]}", CLASSES[ys[i]]
            elif task == "addition":
                a, b = rng.integers(1, 50, size=2)
                p, r = f"What is {a} plus {b}? Answer with the number only.", str(a + b)
            elif task == "french_colour":
                c = list(COLOURS_FR)[rng.integers(len(COLOURS_FR))]
                p, r = f"Translate the colour '{c}' into French. Answer with one word.", COLOURS_FR[c]
            elif task == "opposite":
                w = list(OPPOSITES)[rng.integers(len(OPPOSITES))]
                p, r = f"What is the opposite of '{w}'? Answer with one word.", OPPOSITES[w]
            else:
                w = words[rng.integers(len(words))]
                p, r = f"Write the word '{w}' in capital letters.", w.upper()
            prompts.append(p)
            responses.append(r)
            tasks.append(t)
    return prompts, responses, np.asarray(tasks, dtype=np.int64)
