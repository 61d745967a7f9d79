"""SAM 2 from Meta's own checkpoint, as ai-runner's download script leaves it.

``facebook/sam2-hiera-large`` holds ``sam2_hiera_large.pt`` (the weights of Meta's ``sam2``
package, image and video parts) and ``sam2_hiera_l.yaml``. The runner serves SAM 2 through
transformers' ``Sam2Model``, so the checkpoint is converted: its tensors renamed, the video
parts left out, the architecture read from the yaml (or, without one, from the checkpoint's
name). The conversion is kept next to the snapshot (``models--ORG--NAME/converted/<revision>``)
and the next start loads it; a models folder that cannot be written is converted each start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.hub import cache_folder

if TYPE_CHECKING:
    import torch
    from transformers import Sam2Config, Sam2Model

log = logging.getLogger("pipelines.sam2_checkpoint")

CONVERTER_VERSION = 1  # bump when a conversion made by an earlier version must be redone
CONVERTED = "converted"  # the folder in the model's hub-cache folder that holds conversions
STAMP = "converted-from.json"
CHECKPOINT_NAME = re.compile(r"sam2(?:\.1)?_hiera_(tiny|small|base_plus|large)\.pt")

# Meta's Hiera defaults (sam2/modeling/backbones/hieradet.py), which each size's yaml
# overrides with the values below (sam2/configs/sam2{,.1}/sam2{,.1}_hiera_{t,s,b+,l}.yaml;
# SAM 2 and 2.1 share them).
HIERA_DEFAULTS: dict[str, Any] = {
    "embed_dim": 96,
    "num_heads": 1,
    "stages": [2, 3, 16, 3],
    "global_att_blocks": [12, 16, 20],
    "window_pos_embed_bkg_spatial_size": [14, 14],
    "window_spec": [8, 4, 14, 7],
    "q_pool": 3,
    "q_stride": [2, 2],
    "dim_mul": 2.0,
    "head_mul": 2.0,
}
HIERA_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "embed_dim": 96,
        "num_heads": 1,
        "stages": [1, 2, 7, 2],
        "global_att_blocks": [5, 7, 9],
        "window_pos_embed_bkg_spatial_size": [7, 7],
    },
    "small": {
        "embed_dim": 96,
        "num_heads": 1,
        "stages": [1, 2, 11, 2],
        "global_att_blocks": [7, 10, 13],
        "window_pos_embed_bkg_spatial_size": [7, 7],
    },
    "base_plus": {"embed_dim": 112, "num_heads": 2},
    "large": {
        "embed_dim": 144,
        "num_heads": 2,
        "stages": [2, 6, 36, 4],
        "global_att_blocks": [23, 33, 43],
        "window_pos_embed_bkg_spatial_size": [7, 7],
        "window_spec": [8, 4, 16, 8],
    },
}
NECK_DEFAULTS: dict[str, Any] = {"d_model": 256, "fpn_top_down_levels": [2, 3]}
IMAGE_SIZE = 1024
# Meta builds the mask decoder with 8 attention heads whatever the size
# (SAM2Base._build_sam_heads); the other decoder sizes are read from the tensors.
DECODER_HEADS = 8

# Meta's tensor names -> transformers' (first match wins; the same table read backwards gives
# Meta's name of a transformers tensor). {n}/{i}: a number, {w}: one name, {rest}: the rest.
RENAMES: list[tuple[str, str]] = [
    ("no_mem_embed", "no_memory_embedding"),
    (
        "image_encoder.trunk.patch_embed.proj.{w}",
        "vision_encoder.backbone.patch_embed.projection.{w}",
    ),
    (
        "image_encoder.trunk.blocks.{n}.norm{i}.{w}",
        "vision_encoder.backbone.blocks.{n}.layer_norm{i}.{w}",
    ),
    (
        "image_encoder.trunk.blocks.{n}.mlp.layers.0.{w}",
        "vision_encoder.backbone.blocks.{n}.mlp.proj_in.{w}",
    ),
    (
        "image_encoder.trunk.blocks.{n}.mlp.layers.1.{w}",
        "vision_encoder.backbone.blocks.{n}.mlp.proj_out.{w}",
    ),
    ("image_encoder.trunk.{rest}", "vision_encoder.backbone.{rest}"),
    ("image_encoder.neck.convs.{n}.conv.{w}", "vision_encoder.neck.convs.{n}.{w}"),
    (
        "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "prompt_encoder.shared_embedding.positional_embedding",
    ),
    ("sam_prompt_encoder.mask_downscaling.0.{w}", "prompt_encoder.mask_embed.conv1.{w}"),
    ("sam_prompt_encoder.mask_downscaling.1.{w}", "prompt_encoder.mask_embed.layer_norm1.{w}"),
    ("sam_prompt_encoder.mask_downscaling.3.{w}", "prompt_encoder.mask_embed.conv2.{w}"),
    ("sam_prompt_encoder.mask_downscaling.4.{w}", "prompt_encoder.mask_embed.layer_norm2.{w}"),
    ("sam_prompt_encoder.mask_downscaling.6.{w}", "prompt_encoder.mask_embed.conv3.{w}"),
    ("sam_prompt_encoder.not_a_point_embed.{w}", "prompt_encoder.not_a_point_embed.{w}"),
    ("sam_prompt_encoder.no_mask_embed.{w}", "prompt_encoder.no_mask_embed.{w}"),
    ("sam_mask_decoder.output_upscaling.0.{w}", "mask_decoder.upscale_conv1.{w}"),
    ("sam_mask_decoder.output_upscaling.1.{w}", "mask_decoder.upscale_layer_norm.{w}"),
    ("sam_mask_decoder.output_upscaling.3.{w}", "mask_decoder.upscale_conv2.{w}"),
    (
        "sam_mask_decoder.transformer.layers.{n}.norm{i}.{w}",
        "mask_decoder.transformer.layers.{n}.layer_norm{i}.{w}",
    ),
    (
        "sam_mask_decoder.transformer.layers.{n}.mlp.layers.0.{w}",
        "mask_decoder.transformer.layers.{n}.mlp.proj_in.{w}",
    ),
    (
        "sam_mask_decoder.transformer.layers.{n}.mlp.layers.1.{w}",
        "mask_decoder.transformer.layers.{n}.mlp.proj_out.{w}",
    ),
    (
        "sam_mask_decoder.transformer.{attention}.out_proj.{w}",
        "mask_decoder.transformer.{attention}.o_proj.{w}",
    ),
    (
        "sam_mask_decoder.transformer.norm_final_attn.{w}",
        "mask_decoder.transformer.layer_norm_final_attn.{w}",
    ),
    ("sam_mask_decoder.{head}.layers.0.{w}", "mask_decoder.{head}.proj_in.{w}"),
    ("sam_mask_decoder.{head}.layers.1.{w}", "mask_decoder.{head}.layers.0.{w}"),
    ("sam_mask_decoder.{head}.layers.2.{w}", "mask_decoder.{head}.proj_out.{w}"),
    ("sam_mask_decoder.{rest}", "mask_decoder.{rest}"),
]
PLACEHOLDERS = {
    "n": r"\d+",
    "i": r"\d+",
    "w": r"[^.]+",
    "rest": r".+",
    "attention": r"(?:layers\.\d+\.)?[a-z_]+",
    "head": r"iou_prediction_head|pred_obj_score_head|output_hypernetworks_mlps\.\d+",
}
# SAM 2's four point embeddings: one tensor each in Meta's checkpoint, one (4, C) in
# transformers'; the prompt encoder's Fourier matrix is shared with the image embedding.
POINT_EMBEDDING = re.compile(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight")
POINT_EMBED = "prompt_encoder.point_embed.weight"
SHARED_EMBEDDING = "shared_image_embedding.positional_embedding"
PROMPT_EMBEDDING = "prompt_encoder.shared_embedding.positional_embedding"
# Tensors of Meta's video model (memory, object pointers), which image segmentation never uses.
VIDEO_ONLY = re.compile(
    r"(?:memory_attention|memory_encoder|obj_ptr_proj|obj_ptr_tpos_proj|mask_downsample)\..+"
    r"|maskmem_tpos_enc|no_mem_pos_enc|no_obj_ptr|no_obj_embed_spatial"
)


class CheckpointUnusable(RunnerError):
    """Meta's SAM 2 checkpoint cannot be read or does not describe SAM 2 (the message says
    which file and why)."""


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        f"(?P<{part}>{PLACEHOLDERS[part]})" if index % 2 else re.escape(part)
        for index, part in enumerate(parts)
    )
    return re.compile(regex)


_FORWARD = [(_pattern(meta), hf) for meta, hf in RENAMES]
_BACKWARD = [(_pattern(hf), meta) for meta, hf in RENAMES]


def _rename(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match:
            return template.format(**match.groupdict())
    return None


def transformers_name(meta_key: str) -> str | None:
    """transformers' name of one of Meta's tensors; None when the name is not SAM 2's."""
    return _rename(meta_key, _FORWARD)


def meta_name(hf_key: str) -> str:
    """Meta's name of a ``Sam2Model`` tensor (for messages, and to write Meta's format)."""
    if hf_key == POINT_EMBED:
        return "sam_prompt_encoder.point_embeddings.*.weight"
    if hf_key == SHARED_EMBEDDING:
        return "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
    name = _rename(hf_key, _BACKWARD)
    if name is None:
        raise KeyError(f"{hf_key} has no counterpart in Meta's SAM 2 checkpoint")
    return name


def transformers_state_dict(
    meta: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Meta's tensors under transformers' names, without the video model's; and the names
    that are neither SAM 2's image nor video tensors."""
    import torch

    state: dict[str, torch.Tensor] = {}
    points: dict[int, torch.Tensor] = {}
    unknown = []
    for key, tensor in meta.items():
        point = POINT_EMBEDDING.fullmatch(key)
        if point:
            points[int(point.group(1))] = tensor
        elif VIDEO_ONLY.fullmatch(key):
            continue
        elif (name := transformers_name(key)) is not None:
            state[name] = tensor
        else:
            unknown.append(key)
    if points and sorted(points) == list(range(len(points))):
        state[POINT_EMBED] = torch.cat([points[index] for index in sorted(points)])
    if PROMPT_EMBEDDING in state:
        state[SHARED_EMBEDDING] = state[PROMPT_EMBEDDING]
    return state, unknown


def meta_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``Sam2Model``'s tensors under Meta's names (the image model's part of a checkpoint)."""
    meta = {}
    for key, tensor in state.items():
        if key == SHARED_EMBEDDING:
            continue
        if key == POINT_EMBED:
            for index, row in enumerate(tensor):
                meta[f"sam_prompt_encoder.point_embeddings.{index}.weight"] = row[None].clone()
        else:
            meta[meta_name(key)] = tensor
    return meta


@dataclass(frozen=True)
class MetaCheckpoint:
    """Meta's checkpoint in a snapshot: the weights, and the yaml describing them if any."""

    weights: Path
    config: Path | None

    @property
    def size(self) -> str | None:
        match = CHECKPOINT_NAME.fullmatch(self.weights.name)
        return match.group(1) if match else None

    def stamp(self) -> dict[str, Any]:
        """What a kept conversion must have been made from to be reused."""
        stat = self.weights.stat()
        return {
            "converter": CONVERTER_VERSION,
            "checkpoint": self.weights.name,
            "blob": self.weights.resolve().name,  # the file's sha256 in a hub cache
            "bytes": stat.st_size,
            "modified_ns": stat.st_mtime_ns,
        }


def find_meta_checkpoint(snapshot: Path) -> MetaCheckpoint | None:
    """Meta's ``.pt`` checkpoint (and its yaml) in ``snapshot``; None if there is none."""
    weights = sorted(snapshot.glob("*.pt"))
    if not weights:
        return None
    named = [path for path in weights if CHECKPOINT_NAME.fullmatch(path.name)]
    candidates = named or weights
    if len(candidates) > 1:
        names = ", ".join(path.name for path in candidates)
        raise CheckpointUnusable(f"{snapshot} holds several SAM 2 checkpoints ({names})")
    configs = sorted(snapshot.glob("*.yaml"))
    return MetaCheckpoint(candidates[0], configs[0] if len(configs) == 1 else None)


def _architecture(checkpoint: MetaCheckpoint) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The Hiera trunk and FPN neck settings, and where they were read from."""
    if checkpoint.config is not None:
        import yaml

        try:
            model = yaml.safe_load(checkpoint.config.read_text())["model"]
            encoder = model["image_encoder"]
            trunk, neck = dict(encoder["trunk"]), dict(encoder["neck"])
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise CheckpointUnusable(
                f"{checkpoint.config.name} is not a SAM 2 model config ({exc!r})"
            ) from None
        if model.get("image_size", IMAGE_SIZE) != IMAGE_SIZE:
            raise CheckpointUnusable(
                f"{checkpoint.config.name}: image_size {model['image_size']} is not supported "
                f"(SAM 2 is {IMAGE_SIZE})"
            )
        trunk.pop("_target_", None)
        return {**HIERA_DEFAULTS, **trunk}, {**NECK_DEFAULTS, **neck}, checkpoint.config.name
    size = checkpoint.size
    if size is None:
        raise CheckpointUnusable(
            f"cannot tell the Hiera size of {checkpoint.weights.name}: the snapshot has no "
            "model yaml and the file is not named like Meta's (sam2_hiera_large.pt, ...)"
        )
    return {**HIERA_DEFAULTS, **HIERA_SIZES[size]}, dict(NECK_DEFAULTS), f"hiera {size}"


def _shape(state: dict[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointUnusable(f"{source} has no tensor {meta_name(key)}: not SAM 2's weights")
    return tuple(state[key].shape)


def transformers_config(
    trunk: dict[str, Any], neck: dict[str, Any], state: dict[str, torch.Tensor], source: str
) -> Sam2Config:
    """``Sam2Config`` for Meta's trunk and neck settings and the decoder the tensors hold."""
    from transformers import Sam2Config

    dims, heads = [int(trunk["embed_dim"])], [int(trunk["num_heads"])]
    for _ in trunk["stages"][1:]:
        dims.append(int(dims[-1] * trunk["dim_mul"]))
        heads.append(int(heads[-1] * trunk["head_mul"]))
    hidden = int(neck["d_model"])
    decoder = "mask_decoder.transformer.layers"
    layers = {int(key.split(".")[3]) for key in state if key.startswith(decoder + ".")}
    token_to_image = _shape(state, f"{decoder}.0.cross_attn_token_to_image.q_proj.weight", source)
    return Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": dims[0],
                "num_attention_heads": heads[0],
                "embed_dim_per_stage": dims,
                "num_attention_heads_per_stage": heads,
                "blocks_per_stage": list(trunk["stages"]),
                "global_attention_blocks": list(trunk["global_att_blocks"]),
                "window_size_per_stage": list(trunk["window_spec"]),
                "window_positional_embedding_background_size": list(
                    trunk["window_pos_embed_bkg_spatial_size"]
                ),
                "num_query_pool_stages": int(trunk["q_pool"]),
                "query_stride": list(trunk["q_stride"]),
            },
            "backbone_channel_list": list(neck.get("backbone_channel_list", dims[::-1])),
            "fpn_hidden_size": hidden,
            "fpn_top_down_levels": list(neck["fpn_top_down_levels"]),
        },
        prompt_encoder_config={
            "hidden_size": hidden,
            "mask_input_channels": _shape(state, "prompt_encoder.mask_embed.conv2.weight", source)[
                0
            ],
        },
        mask_decoder_config={
            "hidden_size": hidden,
            "num_hidden_layers": len(layers),
            "num_attention_heads": DECODER_HEADS,
            "mlp_dim": _shape(state, f"{decoder}.0.mlp.proj_in.weight", source)[0],
            "attention_downsample_rate": hidden // token_to_image[0],
            "iou_head_hidden_dim": _shape(
                state, "mask_decoder.iou_prediction_head.proj_in.weight", source
            )[0],
            "num_multimask_outputs": _shape(state, "mask_decoder.mask_tokens.weight", source)[0]
            - 1,
        },
    )


def _read(checkpoint: MetaCheckpoint, source: str) -> dict[str, torch.Tensor]:
    import torch

    try:
        saved = torch.load(checkpoint.weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download, or not a torch file at all
        raise CheckpointUnusable(f"{source} cannot be read: {exc}") from None
    meta = saved.get("model") if isinstance(saved, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointUnusable(
            f"{source} is not a SAM 2 checkpoint of Meta's (no 'model' state dict in it)"
        )
    return meta


def convert(checkpoint: MetaCheckpoint, source: str) -> Sam2Model:
    """Meta's checkpoint as a transformers ``Sam2Model`` (fp32, on the CPU)."""
    from transformers import Sam2Model

    trunk, neck, described_by = _architecture(checkpoint)
    state, unknown = transformers_state_dict(_read(checkpoint, source))
    if unknown:
        raise CheckpointUnusable(
            f"{source} holds {len(unknown)} tensors SAM 2 does not have "
            f"({', '.join(unknown[:5])}): not a SAM 2 checkpoint"
        )
    config = transformers_config(trunk, neck, state, source)
    model = Sam2Model(config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit the architecture
        shapes = "; ".join(line.strip() for line in str(exc).splitlines()[1:4])
        raise CheckpointUnusable(
            f"{source} does not fit the architecture in {described_by}: {shapes}"
        ) from None
    if missing:
        names = sorted({meta_name(key) for key in missing})
        raise CheckpointUnusable(
            f"{source} is missing {len(names)} of SAM 2's tensors ({', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}): an incomplete or different checkpoint; "
            "download it again"
        )
    if unexpected:  # a name the renaming produced that Sam2Model does not have
        raise CheckpointUnusable(f"{source} holds tensors Sam2Model lacks: {unexpected[:5]}")
    log.info("read %s with the architecture in %s", source, described_by)
    return model.eval()


def conversion_folder(model_dir: Path, model_id: str, snapshot: Path) -> Path:
    """Where the conversion of ``snapshot`` (a revision of ``model_id``) is kept."""
    return cache_folder(model_dir, model_id) / CONVERTED / snapshot.name


def _kept(folder: Path, stamp: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / STAMP).read_text()) == stamp
    except (OSError, ValueError):
        return False


def _keep(model: Sam2Model, folder: Path, stamp: dict[str, Any]) -> None:
    """Write the conversion next to the snapshot; the stamp, written last, marks it whole.
    Runners starting together each write their own folder and the first rename wins."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    except OSError as exc:
        log.warning(
            "cannot keep the conversion in %s (%s): it is redone at each start", parent, exc
        )
        return
    try:
        model.save_pretrained(work)
        (work / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work, folder)
        log.info("kept the conversion in %s: later starts load it", folder)
    except OSError as exc:
        if not _kept(folder, stamp):
            log.warning("cannot keep the conversion in %s (%s): redone at each start", folder, exc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load_meta_checkpoint(
    model_dir: Path, model_id: str, snapshot: Path, checkpoint: MetaCheckpoint
) -> Sam2Model:
    """The ``Sam2Model`` of Meta's checkpoint: its kept conversion when there is one made
    from this very file, else converted now (and kept)."""
    from transformers import Sam2Model

    source = f"{model_id}'s {checkpoint.weights.name}"
    folder = conversion_folder(model_dir, model_id, snapshot)
    stamp = checkpoint.stamp()
    if _kept(folder, stamp):
        log.info("loading %s from its conversion to transformers' format in %s", source, folder)
        try:
            return Sam2Model.from_pretrained(folder, local_files_only=True)
        except Exception as exc:  # a damaged kept copy: the checkpoint itself is still there
            log.warning(
                "the kept conversion in %s cannot be loaded (%s): converting again", folder, exc
            )
    started = time.perf_counter()
    log.info("converting %s (Meta's sam2 format) to transformers' Sam2Model", source)
    model = convert(checkpoint, source)
    log.info("converted %s in %.1fs", source, time.perf_counter() - started)
    _keep(model, folder, stamp)
    return model
