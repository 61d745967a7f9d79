#!/usr/bin/env bash
# Download the models the runner serves into a Hugging Face hub cache (the folder mounted at
# /models), fetching what each model needs and no more. Run with --help for the modes.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/download_models.sh [options] (--all | --config aiModels.json | PIPELINE|MODEL_ID ...)

  --all                 every pipeline's network default model
  --config FILE         every model an aiModels.json lists (entries with a "url" are skipped)
  PIPELINE              that pipeline's network default model (e.g. text-to-image)
  MODEL_ID              that model (org/name), e.g. ByteDance/SDXL-Lightning-4step
  --models-dir DIR      where to download (default: $MODEL_DIR, else ~/.lpData/models)
  --dry-run             print what would be fetched; download nothing
  --force               check models again even if an earlier run completed them
  -h, --help            this text

Diffusion models come with the safety checker. Gated models need a Hugging Face token
(HF_TOKEN, or `hf auth login`) whose account accepted the model's licence.
EOF
}

# The network default model of each pipeline.
declare -A DEFAULT_MODEL=(
  [text-to-image]=SG161222/RealVisXL_V4.0_Lightning
  [image-to-image]=ByteDance/SDXL-Lightning
  [image-to-video]=stabilityai/stable-video-diffusion-img2vid-xt-1-1
  [upscale]=stabilityai/stable-diffusion-x4-upscaler
  [audio-to-text]=openai/whisper-large-v3
  [segment-anything-2]=facebook/sam2-hiera-large
  [image-to-text]=Salesforce/blip-image-captioning-large
  [text-to-speech]=suno/bark
)
SAFETY_CHECKER=CompVis/stable-diffusion-safety-checker
SDXL_BASE=stabilityai/stable-diffusion-xl-base-1.0
# Diffusers repositories that publish fp16 weights: only those are fetched.
FP16_MODELS=" SG161222/RealVisXL_V4.0_Lightning stabilityai/stable-diffusion-xl-base-1.0
  stabilityai/sdxl-turbo stabilityai/sd-turbo stabilityai/stable-diffusion-x4-upscaler
  stabilityai/stable-video-diffusion-img2vid-xt stabilityai/stable-video-diffusion-img2vid-xt-1-1
  stable-diffusion-v1-5/stable-diffusion-v1-5 runwayml/stable-diffusion-v1-5 "
# Other diffusers repositories (their root folder may hold large single-file checkpoints
# that the runner never reads: only the component folders are fetched).
DIFFUSERS_MODELS=" stabilityai/stable-diffusion-3-medium-diffusers black-forest-labs/FLUX.1-schnell
  black-forest-labs/FLUX.1-dev timbrooks/instruct-pix2pix "
GATED_MODELS=" stabilityai/stable-diffusion-3-medium-diffusers black-forest-labs/FLUX.1-dev
  stabilityai/stable-video-diffusion-img2vid-xt stabilityai/stable-video-diffusion-img2vid-xt-1-1 "
DIFFUSION_PIPELINES=" text-to-image image-to-image image-to-video upscale "

MODELS_DIR="${MODEL_DIR:-$HOME/.lpData/models}"
DRY_RUN=0
FORCE=0
CONFIG=""
ALL=0
REQUESTS=()

while [ $# -gt 0 ]; do
  case "$1" in
    --all) ALL=1 ;;
    --config) CONFIG="${2:?--config needs a file}"; shift ;;
    --models-dir) MODELS_DIR="${2:?--models-dir needs a folder}"; shift ;;
    --dry-run) DRY_RUN=1 ;;
    --force) FORCE=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) REQUESTS+=("$1") ;;
  esac
  shift
done

if [ "$ALL" = 0 ] && [ -z "$CONFIG" ] && [ ${#REQUESTS[@]} -eq 0 ]; then
  usage >&2
  exit 2
fi
if [ "$DRY_RUN" = 0 ] && ! command -v hf >/dev/null 2>&1; then
  echo "error: the Hugging Face CLI 'hf' is not installed: pip install -U huggingface_hub" >&2
  exit 2
fi

# "pipeline model_id" pairs to fetch; pipeline is "-" when only the id is known.
WANTED=()
if [ "$ALL" = 1 ]; then
  for pipeline in "${!DEFAULT_MODEL[@]}"; do WANTED+=("$pipeline ${DEFAULT_MODEL[$pipeline]}"); done
fi
if [ -n "$CONFIG" ]; then
  [ -f "$CONFIG" ] || { echo "error: no such file: $CONFIG" >&2; exit 2; }
  config_models=$(python3 - "$CONFIG" <<'PY'
import json, sys
try:
    entries = json.load(open(sys.argv[1]))
except (OSError, ValueError) as exc:
    sys.exit(f"error: {sys.argv[1]} is not valid JSON: {exc}")
for entry in entries if isinstance(entries, list) else []:
    if isinstance(entry, dict) and entry.get("model_id") and not entry.get("url"):
        print(entry.get("pipeline") or "-", entry["model_id"])
PY
  ) || exit 2
  if [ -n "$config_models" ]; then
    mapfile -t FROM_CONFIG <<<"$config_models"
    WANTED+=("${FROM_CONFIG[@]}")
  fi
fi
for request in "${REQUESTS[@]}"; do
  if [ -n "${DEFAULT_MODEL[$request]:-}" ]; then
    WANTED+=("$request ${DEFAULT_MODEL[$request]}")
  elif [[ "$request" == */* ]]; then
    WANTED+=("- $request")
  else
    echo "error: '$request' is neither a pipeline (${!DEFAULT_MODEL[*]}) nor an org/name model id" >&2
    exit 2
  fi
done

contains() { # contains LIST WORD: whether the space- or newline-separated LIST holds WORD
  local list=" ${1//$'\n'/ } "
  [[ "$list" == *" $2 "* ]]
}
snapshot_of() { # the folder of a repo's current snapshot in the cache, or nothing
  local root="$MODELS_DIR/models--${1//\//--}"
  [ -f "$root/refs/main" ] && echo "$root/snapshots/$(cat "$root/refs/main")"
}
marker_of() { echo "$MODELS_DIR/.download_models/${1//\//--}.$(printf '%s' "$2" | cksum | cut -d' ' -f1)"; }

DOWNLOADED=0
SKIPPED=0
FAILED=0
declare -A FETCHED=()

# fetch REPO WHAT PATTERN...: download the files of REPO matching the patterns, once.
fetch() {
  local repo="$1" what="$2"
  shift 2
  local key="$repo $*"
  [ -n "${FETCHED[$key]:-}" ] && return 0
  FETCHED[$key]=1
  local marker
  marker=$(marker_of "$repo" "$*")
  if [ "$FORCE" = 0 ] && [ -f "$marker" ]; then
    echo "skip $repo ($what): already downloaded"
    SKIPPED=$((SKIPPED + 1))
    return 0
  fi
  local args=(download "$repo" --cache-dir "$MODELS_DIR")
  local pattern
  for pattern in "$@"; do args+=(--include "$pattern"); done
  if [ "$DRY_RUN" = 1 ]; then
    printf 'would run: hf'
    printf ' %q' "${args[@]}"
    printf '\n'
    return 0
  fi
  if contains "$GATED_MODELS" "$repo" && [ -z "${HF_TOKEN:-}" ]; then
    echo "note: $repo is gated: accept its licence at https://huggingface.co/$repo and set HF_TOKEN (or run hf auth login)"
  fi
  echo "downloading $repo ($what)"
  local log
  log=$(mktemp)
  if hf "${args[@]}" >"$log" 2>&1; then
    mkdir -p "$(dirname "$marker")" && : >"$marker"
    DOWNLOADED=$((DOWNLOADED + 1))
  else
    local status=$?
    local reason
    reason=$(grep -v '^\s*$' "$log" | tail -n 1)
    if grep -qiE '401|403|gated|restricted|authenticat' "$log"; then
      reason="access denied: the model is gated or private; accept its licence at https://huggingface.co/$repo and set HF_TOKEN ($reason)"
    fi
    echo "error: downloading $repo failed (hf exit $status): $reason" >&2
    FAILED=$((FAILED + 1))
  fi
  rm -f "$log"
}

# Transformers-style repositories: safetensors weights, or the .bin weights where a
# repository publishes no safetensors.
fetch_transformers() {
  local repo="$1" what="$2"
  fetch "$repo" "$what" "*.json" "*.txt" "*.model" "*.tiktoken" "*.safetensors"
  [ "$DRY_RUN" = 1 ] && return 0
  local snapshot
  snapshot=$(snapshot_of "$repo") || return 0
  if [ -d "$snapshot" ] && [ -z "$(find "$snapshot" -name '*.safetensors' -print -quit)" ]; then
    fetch "$repo" "$what, .bin weights: it publishes no safetensors" "*.bin"
  fi
}

fetch_model() {
  local pipeline="$1" model="$2"
  case "$model" in
    ByteDance/SDXL-Lightning*)
      # The repository holds UNet checkpoints that load into the SDXL base.
      local steps=""
      [[ "$model" =~ -([248])step$ ]] && steps="${BASH_REMATCH[1]}"
      if [ -n "$steps" ]; then
        fetch ByteDance/SDXL-Lightning "${steps}-step UNet" "sdxl_lightning_${steps}step_unet.safetensors"
      else
        fetch ByteDance/SDXL-Lightning "2/4/8-step UNets" "sdxl_lightning_2step_unet.safetensors" \
          "sdxl_lightning_4step_unet.safetensors" "sdxl_lightning_8step_unet.safetensors"
      fi
      fetch "$SDXL_BASE" "SDXL base for Lightning, fp16" "model_index.json" "*/*.json" "*/*.txt" "*/*.fp16*.safetensors"
      ;;
    facebook/sam2*-hf)
      fetch_transformers "$model" "SAM 2 in transformers' format"
      return 0
      ;;
    facebook/sam2*)
      # Meta's checkpoint and yaml, as ai-runner's script fetches them; the runner converts
      # them to transformers' format at the first start and keeps the conversion.
      fetch "$model" "SAM 2, Meta's checkpoint" "*.pt" "*.yaml"
      return 0
      ;;
    *)
      if contains "$FP16_MODELS" "$model"; then
        fetch "$model" "diffusers, fp16 weights" "model_index.json" "*/*.json" "*/*.txt" "*/*.model" "*/*.fp16*.safetensors"
      elif contains "$DIFFUSERS_MODELS" "$model" || { [ "$pipeline" != "-" ] && contains "$DIFFUSION_PIPELINES" "$pipeline"; }; then
        fetch "$model" "diffusers" "model_index.json" "*/*.json" "*/*.txt" "*/*.model" "*/*.safetensors"
      else
        fetch_transformers "$model" "weights and processor files"
        return 0
      fi
      ;;
  esac
  fetch_transformers "$SAFETY_CHECKER" "safety checker"
}

echo "models folder: $MODELS_DIR"
[ "$DRY_RUN" = 1 ] || mkdir -p "$MODELS_DIR"
for item in "${WANTED[@]}"; do
  fetch_model "${item%% *}" "${item#* }"
done
if [ "$DRY_RUN" = 1 ]; then
  echo "dry run: nothing downloaded"
else
  echo "done: $DOWNLOADED downloaded, $SKIPPED already there, $FAILED failed"
fi
[ "$FAILED" = 0 ]
