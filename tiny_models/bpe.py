"""Byte-level BPE, as CLIP's and GPT-2's (Whisper's) tokenizers use it, learnt from a short text.

Real vocabularies hold tens of thousands of tokens; the tiny models keep the same format and
special tokens with a vocabulary of a few hundred, so their embeddings stay tiny.
"""

from __future__ import annotations

from collections import Counter

CORPUS = (
    "a photo of a cat sitting on a red sofa in the living room, high quality, detailed "
    "a painting of a mountain lake at sunset with a boat and trees, oil on canvas "
    "portrait of an astronaut riding a horse on the moon, cinematic lighting, 8k "
    "a bowl of fruit on a wooden table next to the window, soft light, photograph "
    "the city street at night with neon signs and rain, blurry, low quality, ugly "
    "a dog running on the beach with the ocean waves behind it, sharp focus "
)

Word = tuple[str, ...]


def bytes_to_unicode() -> dict[int, str]:
    """The reversible map from bytes to printable characters that byte-level BPE uses."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def symbols(word: str) -> Word:
    table = bytes_to_unicode()
    return tuple(table[b] for b in word.encode())


def _merge(word: Word, pair: tuple[str, str]) -> Word:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def learn_merges(words: Counter[Word], count: int) -> list[tuple[str, str]]:
    """The ``count`` most frequent pair merges over ``words`` (already split in symbols)."""
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += freq
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        merged: Counter[Word] = Counter()
        for word, freq in words.items():
            merged[_merge(word, best)] += freq
        words = merged
    return merges
