"""Tiny random-weight Whisper, with a tokenizer that has Whisper's real special tokens."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from runner.tiny_models.bpe import CORPUS, bytes_to_unicode, learn_merges, symbols

SPEECH = "hello world this is a test of speech recognition we transcribe audio into text"


def _whisper_tokenizer():
    """GPT-2 byte-level BPE, then Whisper's special tokens in Whisper's order: end of text,
    start of transcript, the languages, tasks, no-timestamps, and the 1501 timestamps
    ``<|0.00|>`` to ``<|30.00|>``."""
    from transformers import WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    words: Counter = Counter()
    for i, word in enumerate(f"{CORPUS} {SPEECH}".replace(",", " ").split()):
        words[symbols(" " + word if i else word)] += 1
    merges = learn_merges(words, 150)
    vocab: dict[str, int] = {}
    for token in [*bytes_to_unicode().values(), *("".join(pair) for pair in merges)]:
        vocab.setdefault(token, len(vocab))
    tokenizer = WhisperTokenizer(
        vocab=vocab, merges=merges, model_max_length=448, pad_token="<|endoftext|>"
    )
    specials = [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    return tokenizer, LANGUAGES


def build_whisper(folder: Path, seed: int) -> None:
    """Whisper large-v3's architecture (128 mel bins, 30 s windows, 1500 encoder positions),
    shrunk to two tiny layers; the generation config carries what Whisper's generate needs:
    language and task ids, timestamp rules and cross-attention heads for word timestamps."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    torch.manual_seed(seed)
    tokenizer, languages = _whisper_tokenizer()

    def token(text: str) -> int:
        return tokenizer.convert_tokens_to_ids(text)

    eot, sot = token("<|endoftext|>"), token("<|startoftranscript|>")
    begin_suppress = [token("Ġ"), eot]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=128,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        max_length=48,  # random weights never stop on their own: keep the tests quick
        begin_suppress_tokens=begin_suppress,
        suppress_tokens=[],
        no_timestamps_token_id=token("<|notimestamps|>"),
        prev_sot_token_id=token("<|startofprev|>"),
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": token(f"<|{code}|>") for code in languages},
        task_to_id={"translate": token("<|translate|>"), "transcribe": token("<|transcribe|>")},
        max_initial_timestamp_index=50,
        alignment_heads=[[1, 0], [1, 1], [1, 2]],
    )
    model.save_pretrained(folder)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer
    )
    processor.save_pretrained(folder)
