"""segment-anything-2 from Meta's checkpoint, as ai-runner's download script leaves it.

ai-runner's runner/dl_checkpoints.sh fetches `facebook/sam2-hiera-large --include "*.pt"
--include "*.yaml"`, and its pipelines/segment_anything_2.py loads that with Meta's package
(`SAM2ImagePredictor.from_pretrained`, sam2/build_sam.py `build_sam2_hf`). Here the checkpoint
is converted to transformers' Sam2Model, kept next to the snapshot and reused.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import serving
from PIL import Image

from pipelines.sam2_checkpoint import (
    HIERA_SIZES,
    STAMP,
    conversion_folder,
    transformers_config,
    transformers_state_dict,
)
from runner.hub import locate_model
from tiny_models import TINY_SAM2_META, TINY_SAM2_META_HF, build

WIDTH, HEIGHT = 80, 60
CHECKPOINT = "sam2_hiera_large.pt"


@pytest.fixture
def meta_dir(tmp_path: Path) -> Path:
    """A models folder holding the tiny SAM 2 as Meta's checkpoint, and its -hf twin."""
    build(tmp_path, only=[TINY_SAM2_META, TINY_SAM2_META_HF])
    return tmp_path


def picture() -> bytes:
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[10:40, 20:60] = (40, 200, 90)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def segment(client, **fields) -> dict:
    data = {"point_coords": "[[40, 25], [10, 50]]", "point_labels": "[1, 0]", **fields}
    response = client.post("/segment-anything-2", files={"image": ("p.png", picture())}, data=data)
    assert response.status_code == 200, response.text
    return {key: np.asarray(json.loads(value)) for key, value in response.json().items()}


def sam2_settings(make_settings, model_dir: Path, model_id: str = TINY_SAM2_META):
    return make_settings(pipeline="segment-anything-2", model_id=model_id, model_dir=model_dir)


def answers(client) -> list[dict]:
    return [
        segment(client),
        segment(client, multimask_output="false", return_logits="false"),
        segment(client, point_coords=None, point_labels=None, box="[15, 5, 70, 45]"),
    ]


def test_metas_checkpoint_gives_the_masks_of_its_transformers_twin(make_settings, meta_dir, caplog):
    caplog.set_level(logging.INFO)
    with serving(sam2_settings(make_settings, meta_dir)) as client:
        assert client.get("/health").json()["status"] == "IDLE"
        converted = answers(client)
    assert "converting tiny-random/sam2-hiera-large's sam2_hiera_large.pt" in caplog.text
    assert "with the architecture in sam2_hiera_l.yaml" in caplog.text
    with serving(sam2_settings(make_settings, meta_dir, TINY_SAM2_META_HF)) as client:
        twin = answers(client)
    assert converted[0]["masks"].shape == (3, HEIGHT, WIDTH)
    assert converted[1]["masks"].shape == (1, HEIGHT, WIDTH)
    for ours, theirs in zip(converted, twin, strict=True):
        for key in ("masks", "scores", "logits"):
            np.testing.assert_array_equal(ours[key], theirs[key])
    scores = converted[0]["scores"]
    assert scores.std() > 0  # masks that differ: a real comparison, not of constants


def test_the_conversion_is_kept_next_to_the_snapshot_and_reused(make_settings, meta_dir, caplog):
    snapshot = locate_model(meta_dir, TINY_SAM2_META)
    kept = conversion_folder(meta_dir, TINY_SAM2_META, snapshot)
    assert kept == meta_dir / "models--tiny-random--sam2-hiera-large/converted" / snapshot.name
    caplog.set_level(logging.INFO)
    with serving(sam2_settings(make_settings, meta_dir)) as client:
        first = segment(client)
    assert {p.name for p in kept.iterdir()} == {"config.json", "model.safetensors", STAMP}
    assert json.loads((kept / STAMP).read_text())["checkpoint"] == CHECKPOINT
    caplog.clear()
    with serving(sam2_settings(make_settings, meta_dir)) as client:
        second = segment(client)
        assert "from Meta's sam2_hiera_large.pt" in client.app.state.runtime.pipeline.describe()
    assert "from its conversion to transformers' format in" in caplog.text
    assert "converting" not in caplog.text
    np.testing.assert_array_equal(first["masks"], second["masks"])
    assert not [p for p in kept.parent.iterdir() if p.name.startswith(".")]  # no work folders


def test_a_changed_checkpoint_is_converted_again(make_settings, meta_dir, caplog):
    with serving(sam2_settings(make_settings, meta_dir)) as client:
        segment(client)
    weights = locate_model(meta_dir, TINY_SAM2_META) / CHECKPOINT
    saved = torch.load(weights, weights_only=True)
    size = weights.stat().st_size
    saved["model"]["sam_mask_decoder.iou_token.weight"] += 1.0  # same size, other values
    torch.save(saved, weights)
    assert weights.stat().st_size == size
    caplog.set_level(logging.INFO)
    with serving(sam2_settings(make_settings, meta_dir)) as client:
        segment(client)
    assert "converting tiny-random/sam2-hiera-large's sam2_hiera_large.pt" in caplog.text


def test_a_damaged_kept_conversion_is_made_again(make_settings, meta_dir, caplog):
    with serving(sam2_settings(make_settings, meta_dir)) as client:
        first = segment(client)
    kept = conversion_folder(meta_dir, TINY_SAM2_META, locate_model(meta_dir, TINY_SAM2_META))
    (kept / "model.safetensors").write_bytes(b"not safetensors")
    caplog.set_level(logging.INFO)
    with serving(sam2_settings(make_settings, meta_dir)) as client:
        np.testing.assert_array_equal(segment(client)["masks"], first["masks"])
    assert "cannot be loaded" in caplog.text and "converting again" in caplog.text
    assert (kept / "model.safetensors").stat().st_size > 1000


def failure(make_settings, model_dir: Path) -> str:
    with serving(sam2_settings(make_settings, model_dir)) as client:
        assert client.get("/health").json()["status"] == "ERROR"
        response = client.post(
            "/segment-anything-2",
            files={"image": ("p.png", picture())},
            data={"point_coords": "[[40, 25]]", "point_labels": "[1]"},
        )
        assert response.status_code == 500
        return response.json()["detail"]["msg"]


def rewrite(model_dir: Path, change) -> None:
    weights = locate_model(model_dir, TINY_SAM2_META) / CHECKPOINT
    saved = torch.load(weights, weights_only=True)
    change(saved["model"])
    torch.save(saved, weights)


def test_a_checkpoint_missing_tensors_is_a_clear_load_error(make_settings, meta_dir):
    rewrite(meta_dir, lambda state: state.pop("image_encoder.trunk.blocks.0.attn.qkv.weight"))
    assert failure(make_settings, meta_dir) == (
        "Model tiny-random/sam2-hiera-large failed to load: tiny-random/sam2-hiera-large's "
        "sam2_hiera_large.pt is missing 1 of SAM 2's tensors "
        "(image_encoder.trunk.blocks.0.attn.qkv.weight): an incomplete or different "
        "checkpoint; download it again"
    )
    assert not (meta_dir / "models--tiny-random--sam2-hiera-large" / "converted").exists()


def test_tensors_that_are_not_sam2s_are_a_clear_load_error(make_settings, meta_dir):
    rewrite(meta_dir, lambda state: state.update({"text_encoder.proj.weight": torch.zeros(2)}))
    assert failure(make_settings, meta_dir) == (
        "Model tiny-random/sam2-hiera-large failed to load: tiny-random/sam2-hiera-large's "
        "sam2_hiera_large.pt holds 1 tensors SAM 2 does not have (text_encoder.proj.weight): "
        "not a SAM 2 checkpoint"
    )


def test_a_truncated_checkpoint_is_a_clear_load_error(make_settings, meta_dir):
    weights = locate_model(meta_dir, TINY_SAM2_META) / CHECKPOINT
    weights.write_bytes(weights.read_bytes()[:1000])
    message = failure(make_settings, meta_dir)
    assert message.startswith(
        "Model tiny-random/sam2-hiera-large failed to load: tiny-random/sam2-hiera-large's "
        "sam2_hiera_large.pt cannot be read: "
    )


def test_without_its_yaml_the_architecture_comes_from_the_checkpoints_name(make_settings, meta_dir):
    """sam2_hiera_large.pt without sam2_hiera_l.yaml is read as Hiera large: the tiny
    weights do not fit it, and the error says so."""
    (locate_model(meta_dir, TINY_SAM2_META) / "sam2_hiera_l.yaml").unlink()
    message = failure(make_settings, meta_dir)
    assert message.startswith(
        "Model tiny-random/sam2-hiera-large failed to load: tiny-random/sam2-hiera-large's "
        "sam2_hiera_large.pt does not fit the architecture in hiera large: size mismatch for "
    )
    snapshot = locate_model(meta_dir, TINY_SAM2_META)
    shutil.move(snapshot / CHECKPOINT, snapshot / "model.pt")
    assert failure(make_settings, meta_dir).endswith(
        "cannot tell the Hiera size of model.pt: the snapshot has no model yaml and the file "
        "is not named like Meta's (sam2_hiera_large.pt, ...)"
    )


def test_the_checkpoint_holds_metas_tensor_names(meta_dir):
    """Names as Meta's modules give them (sam2/modeling/sam2_base.py, backbones/hieradet.py,
    backbones/image_encoder.py, sam/prompt_encoder.py, sam/mask_decoder.py, sam/transformer.py)."""
    weights = locate_model(meta_dir, TINY_SAM2_META) / CHECKPOINT
    names = set(torch.load(weights, weights_only=True)["model"])
    assert {
        "no_mem_embed",
        "image_encoder.trunk.pos_embed",
        "image_encoder.trunk.pos_embed_window",
        "image_encoder.trunk.patch_embed.proj.weight",
        "image_encoder.trunk.blocks.0.norm1.weight",
        "image_encoder.trunk.blocks.0.attn.qkv.weight",
        "image_encoder.trunk.blocks.0.mlp.layers.1.bias",
        "image_encoder.trunk.blocks.1.proj.weight",
        "image_encoder.neck.convs.3.conv.weight",
        "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "sam_prompt_encoder.point_embeddings.3.weight",
        "sam_prompt_encoder.not_a_point_embed.weight",
        "sam_prompt_encoder.mask_downscaling.6.weight",
        "sam_prompt_encoder.no_mask_embed.weight",
        "sam_mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.weight",
        "sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight",
        "sam_mask_decoder.transformer.layers.0.norm4.bias",
        "sam_mask_decoder.transformer.final_attn_token_to_image.k_proj.weight",
        "sam_mask_decoder.transformer.norm_final_attn.weight",
        "sam_mask_decoder.output_upscaling.1.weight",
        "sam_mask_decoder.output_hypernetworks_mlps.3.layers.2.bias",
        "sam_mask_decoder.iou_prediction_head.layers.1.weight",
        "sam_mask_decoder.pred_obj_score_head.layers.0.weight",
        "sam_mask_decoder.conv_s1.weight",
        "sam_mask_decoder.obj_score_token.weight",
        "maskmem_tpos_enc",
        "memory_encoder.out_proj.weight",
    } <= names
    assert not [n for n in names if "layer_norm" in n or "vision_encoder" in n or "o_proj" in n]
    state, unknown = transformers_state_dict(torch.load(weights, weights_only=True)["model"])
    assert unknown == [] and state["prompt_encoder.point_embed.weight"].shape == (4, 32)


def meta_shaped_decoder() -> dict[str, torch.Tensor]:
    """The decoder tensors whose shapes the config is read from, as Meta's SAM 2 has them
    (SAM2Base._build_sam_heads: mlp_dim 2048, IoU head 256 wide, 16 mask channels)."""
    meta = {
        "sam_prompt_encoder.mask_downscaling.3.weight": torch.empty(16, 4, 2, 2),
        "sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight": torch.empty(2048, 256),
        "sam_mask_decoder.transformer.layers.1.mlp.layers.0.weight": torch.empty(2048, 256),
        "sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight": (
            torch.empty(128, 256)
        ),
        "sam_mask_decoder.iou_prediction_head.layers.0.weight": torch.empty(256, 256),
        "sam_mask_decoder.mask_tokens.weight": torch.empty(4, 256),
    }
    return transformers_state_dict(meta)[0]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # transformers' models/sam2/convert_sam2_to_hf.py get_config, per Hiera size
        (
            "large",
            {
                "embed_dim_per_stage": [144, 288, 576, 1152],
                "num_attention_heads_per_stage": [2, 4, 8, 16],
                "blocks_per_stage": [2, 6, 36, 4],
                "global_attention_blocks": [23, 33, 43],
                "window_positional_embedding_background_size": [7, 7],
                "window_size_per_stage": [8, 4, 16, 8],
                "backbone_channel_list": [1152, 576, 288, 144],
            },
        ),
        (
            "base_plus",
            {
                "embed_dim_per_stage": [112, 224, 448, 896],
                "num_attention_heads_per_stage": [2, 4, 8, 16],
                "blocks_per_stage": [2, 3, 16, 3],
                "global_attention_blocks": [12, 16, 20],
                "window_positional_embedding_background_size": [14, 14],
                "window_size_per_stage": [8, 4, 14, 7],
                "backbone_channel_list": [896, 448, 224, 112],
            },
        ),
        (
            "small",
            {
                "embed_dim_per_stage": [96, 192, 384, 768],
                "num_attention_heads_per_stage": [1, 2, 4, 8],
                "blocks_per_stage": [1, 2, 11, 2],
                "global_attention_blocks": [7, 10, 13],
                "window_positional_embedding_background_size": [7, 7],
                "window_size_per_stage": [8, 4, 14, 7],
                "backbone_channel_list": [768, 384, 192, 96],
            },
        ),
        (
            "tiny",
            {
                "embed_dim_per_stage": [96, 192, 384, 768],
                "blocks_per_stage": [1, 2, 7, 2],
                "global_attention_blocks": [5, 7, 9],
                "window_positional_embedding_background_size": [7, 7],
                "window_size_per_stage": [8, 4, 14, 7],
            },
        ),
    ],
)
def test_each_hiera_size_gets_the_config_of_transformers_conversion(size, expected):
    from pipelines.sam2_checkpoint import HIERA_DEFAULTS, NECK_DEFAULTS

    trunk = {**HIERA_DEFAULTS, **HIERA_SIZES[size]}
    config = transformers_config(trunk, dict(NECK_DEFAULTS), meta_shaped_decoder(), size)
    backbone = config.vision_config.backbone_config
    found = {key: list(getattr(backbone, key, [])) for key in expected}
    found["backbone_channel_list"] = list(config.vision_config.backbone_channel_list)
    assert {key: found[key] for key in expected} == expected
    decoder = config.mask_decoder_config
    assert (decoder.hidden_size, decoder.mlp_dim, decoder.num_attention_heads) == (256, 2048, 8)
    assert (decoder.iou_head_hidden_dim, decoder.attention_downsample_rate) == (256, 2)
    assert decoder.num_hidden_layers == 2 and decoder.num_multimask_outputs == 3
    assert config.prompt_encoder_config.mask_input_channels == 16


@pytest.mark.parametrize(
    ("model_id", "checkpoint", "config"),
    [
        ("facebook/sam2-hiera-tiny", "sam2_hiera_tiny.pt", None),
        ("facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt", "sam2.1/sam2.1_hiera_s.yaml"),
    ],
)
def test_same_masks_as_metas_sam2_package(make_settings, tmp_path, model_id, checkpoint, config):
    """Against Meta's own model (random weights at a real size), where its package is
    installed (`pip install sam2`; not in CI): the runner's masks, scores and low-resolution
    logits are those of SAM2ImagePredictor, which ai-runner serves."""
    sam2 = pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from tiny_models.hub_layout import snapshot_folder

    package_config = f"configs/{config or 'sam2/sam2_hiera_t.yaml'}"
    torch.manual_seed(0)
    model = build_sam2(package_config, None, device="cpu").eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    snapshot = snapshot_folder(tmp_path, model_id, "1")
    torch.save({"model": model.state_dict()}, snapshot / checkpoint)
    if config:
        shutil.copy(Path(sam2.__file__).parent / package_config, snapshot / Path(config).name)

    image = Image.open(io.BytesIO(picture())).convert("RGB")
    predictor = SAM2ImagePredictor(model)
    with torch.inference_mode():
        predictor.set_image(image)
        masks, scores, logits = predictor.predict(
            point_coords=np.array([[40, 25], [10, 50]]),
            point_labels=np.array([1, 0]),
            multimask_output=True,
            return_logits=True,
        )
    order = np.argsort(-scores, kind="stable")
    settings = make_settings(pipeline="segment-anything-2", model_id=model_id, model_dir=tmp_path)
    with serving(settings) as client:
        ours = segment(client)
    # within the 4 decimals of the answer and the resampling of the image and masks
    np.testing.assert_allclose(ours["scores"], scores[order], atol=1e-3)
    np.testing.assert_allclose(ours["logits"], logits[order], atol=5e-3, rtol=0)
    np.testing.assert_allclose(ours["masks"], masks[order], atol=5e-3, rtol=0)
    assert np.abs(logits).max() > 0.1  # masks that are not all zero
