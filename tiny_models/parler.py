"""Tiny random-weight Parler-TTS (``parler_tts``; its own environment, the ``parler`` extra).

parler-tts/parler-tts-large-v1 is a T5 text encoder (flan-t5, reading the description), a
decoder that predicts the codes of a DAC codec from the description and the text (the text
enters as prompt embeddings), and the 44.1 kHz DAC that turns codes into sound. The tiny one
keeps all three and a real SentencePiece T5 tokenizer. parler-tts builds its DAC with the
codec's own layer sizes whatever the config says, so only the codebooks and the latent shrink.
"""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

from tiny_models.bpe import CORPUS
from tiny_models.speech import SPEECH

CODEBOOK_SIZE = 1024  # the DAC's, as in the real model
NUM_CODEBOOKS = 4
EOS = PAD = CODEBOOK_SIZE  # the decoder's vocabulary: codes, then end (= pad), then start
BOS = CODEBOOK_SIZE + 1
DESCRIPTIONS = (
    "a male speaker delivers a slightly expressive and animated speech with a moderate speed "
    "and pitch. a female speaker with a calm low voice speaks slowly in a quiet room "
)


def save_t5_sentencepiece_tokenizer(folder: Path) -> int:
    """flan-t5's tokenizer format: a unigram SentencePiece model (pad 0, end 1, unknown 2,
    no start) learnt from a short text, plus T5's 100 sentinel tokens; every printable ASCII
    character is a piece. Written as both ``spiece.model`` and ``tokenizer.json``."""
    import sentencepiece
    from transformers import T5TokenizerFast

    lines = [CORPUS, SPEECH, DESCRIPTIONS, " ".join(string.printable.strip())]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=160,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    tokenizer = T5TokenizerFast(
        vocab_file=str(folder / "spiece.model"), extra_ids=100, model_max_length=512, legacy=True
    )
    tokenizer.save_pretrained(folder)
    # flan-t5's tokenizer_config has no add_prefix_space; with it, loading converts spiece.model
    # again instead of reading tokenizer.json.
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("add_prefix_space", None)
    config_file.write_text(json.dumps(config, indent=2))
    return len(tokenizer)


def build_parler(folder: Path, seed: int) -> None:
    """Parler-TTS large-v1's layout: ``ParlerTTSForConditionalGeneration`` with a two-layer
    gated-GELU T5 encoder, a two-layer decoder over four codebooks of a 44.1 kHz DAC, and a
    generation config that samples and stops after a fraction of a second (random weights
    never choose to end)."""
    import torch
    from parler_tts import DACConfig, ParlerTTSConfig, ParlerTTSDecoderConfig
    from parler_tts import ParlerTTSForConditionalGeneration as Parler
    from transformers import GenerationConfig, T5Config

    torch.manual_seed(seed)
    vocab = save_t5_sentencepiece_tokenizer(folder)
    text_encoder = T5Config(
        vocab_size=vocab,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
    )
    codec = DACConfig(
        num_codebooks=NUM_CODEBOOKS,
        codebook_size=CODEBOOK_SIZE,
        latent_dim=64,
        frame_rate=86,
        sampling_rate=44_100,
    )
    decoder = ParlerTTSDecoderConfig(
        # The real vocabulary is padded to 1088; random weights would pick the padding, which
        # a trained decoder never does and which parler-tts drops from the audio.
        vocab_size=CODEBOOK_SIZE + 2,
        # Weights drawn wider than the real init: logits as peaked as a trained decoder's, so
        # the description and the text decide which codes are sampled.
        initializer_factor=1.0,
        max_position_embeddings=512,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_cross_attention_key_value_heads=4,
        hidden_size=32,
        num_codebooks=NUM_CODEBOOKS,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    config = ParlerTTSConfig.from_sub_models_config(
        text_encoder,
        codec,
        decoder,
        vocab_size=vocab,
        pad_token_id=PAD,
        decoder_start_token_id=BOS,
    )
    model = Parler(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=BOS,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        do_sample=True,
        max_length=40,
        min_new_tokens=10,
    )
    model.save_pretrained(folder)
