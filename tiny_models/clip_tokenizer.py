"""A small but real CLIP tokenizer: CLIP's files, special tokens and pre-tokenisation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tiny_models.bpe import CORPUS, bytes_to_unicode, learn_merges, symbols

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _clip_words() -> Counter:
    """CLIP marks the end of each word with ``</w>``."""
    return Counter(
        (*symbols(word)[:-1], symbols(word)[-1] + "</w>")
        for word in CORPUS.lower().replace(",", " ").split()
    )


def clip_vocab(merge_count: int = 200) -> tuple[dict[str, int], list[tuple[str, str]]]:
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges = learn_merges(_clip_words(), merge_count)
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
