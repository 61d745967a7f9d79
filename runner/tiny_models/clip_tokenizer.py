"""A small but real CLIP byte-level BPE tokenizer, learnt at build time from a short text.

Real CLIP vocabularies hold 49,408 tokens; this one keeps the same format, special tokens
and pre-tokenisation with a vocabulary of a few hundred, so tiny text encoders stay tiny.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

CORPUS = (
    "a photo of a cat sitting on a red sofa in the living room, high quality, detailed "
    "a painting of a mountain lake at sunset with a boat and trees, oil on canvas "
    "portrait of an astronaut riding a horse on the moon, cinematic lighting, 8k "
    "a bowl of fruit on a wooden table next to the window, soft light, photograph "
    "the city street at night with neon signs and rain, blurry, low quality, ugly "
    "a dog running on the beach with the ocean waves behind it, sharp focus "
)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from bytes to printable characters."""
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


def _learn_merges(corpus: str, count: int) -> list[tuple[str, str]]:
    byte_chars = _bytes_to_unicode()
    words = Counter(
        tuple(byte_chars[b] for b in word.encode())[:-1] + (byte_chars[word.encode()[-1]] + "</w>",)
        for word in corpus.lower().replace(",", " ").split()
    )
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
        merged: Counter[tuple[str, ...]] = Counter()
        for word, freq in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    return merges


def clip_vocab(merge_count: int = 200) -> tuple[dict[str, int], list[tuple[str, str]]]:
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges = _learn_merges(CORPUS, merge_count)
    tokens += ["".join(pair) for pair in merges]
    tokens += [BOS, EOS]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def save_clip_tokenizer(folder: Path, pad_token: str = EOS, max_length: int = 77) -> int:
    """Write the tokenizer's files into ``folder``; returns the vocabulary size."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        pad_token=pad_token,
        model_max_length=max_length,
    )
    tokenizer.save_pretrained(folder)
    # The classic files too, as real CLIP repositories ship them for older loaders.
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    (folder / "merges.txt").write_text(merges_text)
    return len(vocab)
