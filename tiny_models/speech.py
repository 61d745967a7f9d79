"""Tiny random-weight Whisper, with a tokenizer that has Whisper's real special tokens."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tiny_models.bpe import CORPUS, bytes_to_unicode, learn_merges, symbols

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


def build_vits(folder: Path, seed: int) -> None:
    """MMS-TTS (``VitsModel``): a character tokenizer as facebook/mms-tts-eng ships it, and
    the VITS text encoder, flow, duration predictor and HiFi-GAN decoder, a few channels wide."""
    import json

    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    torch.manual_seed(seed)
    characters = list("_ abcdefghijklmnopqrstuvwxyz'-.,?!")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(characters)}))
    tokenizer = VitsTokenizer(
        vocab_file=str(folder / "vocab.json"),
        language="eng",
        add_blank=True,
        normalize=True,
        phonemize=False,
        is_uroman=False,
    )
    config = VitsConfig(
        vocab_size=len(characters),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=16,
        spectrogram_bins=33,
        upsample_initial_channel=16,
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=2,
        posterior_encoder_num_wavenet_layers=2,
        duration_predictor_filter_channels=16,
        depth_separable_num_layers=2,
        sampling_rate=16_000,
    )
    VitsModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_bark(folder: Path, seed: int) -> None:
    """Bark (``BarkModel``): semantic, coarse and fine GPTs with Bark's real vocabularies,
    an EnCodec codec at 24 kHz, a BERT tokenizer, and one voice preset laid out as
    suno/bark ships them (``speaker_embeddings_path.json`` and ``.npy`` prompts)."""
    import json

    import numpy as np
    import torch
    from transformers import BarkConfig, BarkModel, BarkProcessor, BertTokenizer, EncodecConfig
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    torch.manual_seed(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *SPEECH.split(), *letters]
    tokens += [*".,!?'-", *(f"##{c}" for c in letters)]
    tokenizer = BertTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=False, model_max_length=512
    )

    def gpt(vocab_in: int, vocab_out: int, **extra: int) -> dict:
        sizes = {"block_size": 1024, "hidden_size": 16, "num_layers": 1, "num_heads": 2}
        return {"input_vocab_size": vocab_in, "output_vocab_size": vocab_out, **sizes, **extra}

    codec = EncodecConfig(
        target_bandwidths=[1.5, 3.0, 6.0],
        sampling_rate=24_000,
        audio_channels=1,
        num_filters=4,
        hidden_size=16,
        codebook_size=1024,
        codebook_dim=16,
        upsampling_ratios=[8, 5, 4, 2],
        num_lstm_layers=1,
    )
    config = BarkConfig(
        semantic_config=gpt(129_600, 10_048),
        coarse_acoustics_config=gpt(12_096, 12_096),
        fine_acoustics_config=gpt(1056, 1056, n_codes_total=8, n_codes_given=1),
        codec_config=codec.to_dict(),
    )
    model = BarkModel(config)
    with torch.no_grad():
        # EnCodec's codebooks start at zero until trained: random ones make codes audible.
        for name, buffer in model.codec_model.named_buffers():
            if name.endswith((".embed", ".embed_avg")):
                buffer.normal_()
            elif name.endswith(".cluster_size"):
                buffer.fill_(1.0)
    model.save_pretrained(folder)
    # Random weights never say "stop": a short semantic budget keeps the tests quick.
    generation = BarkGenerationConfig(
        semantic_config={"max_new_tokens": 20},
        coarse_acoustics_config={},
        fine_acoustics_config={},
        sample_rate=24_000,
        codebook_size=1024,
    )
    (folder / "generation_config.json").write_text(json.dumps(generation.to_dict(), default=str))
    rng = np.random.default_rng(seed)
    prompts = {}
    (folder / "speaker_embeddings" / "v2").mkdir(parents=True)
    for kind, shape, high in (
        ("semantic_prompt", (40,), 10_000),
        ("coarse_prompt", (2, 60), 1024),
        ("fine_prompt", (8, 60), 1024),
    ):
        relative = f"speaker_embeddings/v2/en_speaker_0_{kind}.npy"
        np.save(folder / relative, rng.integers(0, high, shape))
        prompts[kind] = relative
    presets = {"repo_or_path": ".", "v2/en_speaker_0": prompts}
    (folder / "speaker_embeddings_path.json").write_text(json.dumps(presets))
    BarkProcessor(tokenizer=tokenizer).save_pretrained(folder)
