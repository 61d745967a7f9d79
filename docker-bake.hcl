# Container images, one per pipeline group.
#   docker buildx bake                  every image (:latest and one per other pipeline group)
#   docker buildx bake text-to-image    the image that serves text-to-image
#   REGISTRY=ghcr.io REPOSITORY=me/ai-runner VERSION=0.2.0 docker buildx bake --push

variable "REGISTRY" {
  default = "docker.io"
}

variable "REPOSITORY" {
  default = "livepeer/ai-runner"
}

variable "VERSION" {
  default = "0.15.0"
}

variable "CUDA_VERSION" {
  default = "12.8.1"
}

variable "TORCH_VERSION" {
  default = "2.9.1"
}

variable "TORCHVISION_VERSION" {
  default = "0.24.1"
}

# Which pipelines each group's image serves (the group column of pipelines/registry.py).
# go-livepeer's AI worker pulls :latest for these (ai/worker/docker.go defaultBaseImage).
variable "DIFFUSION_PIPELINES" {
  default = ["text-to-image", "image-to-image", "image-to-video", "upscale", "image-to-text"]
}

# go-livepeer pulls :<pipeline> for the rest (ai/worker/docker.go pipelineToImage).
variable "VISION_PIPELINES" {
  default = ["segment-anything-2"]
}

variable "AUDIO_PIPELINES" {
  default = ["audio-to-text"]
}

variable "SPEECH_PIPELINES" {
  default = ["text-to-speech"]
}

# Parler-TTS: parler-tts pins its own transformers, so it has an image of its own. It carries
# go-livepeer's `text-to-speech` tag, as ai-runner's text-to-speech image served Parler-TTS;
# the speech image (Bark, MMS-TTS) is tagged by the model families it serves.
variable "PARLER_PIPELINES" {
  default = ["text-to-speech"]
}

# <repo>:<pipeline> and <repo>:<pipeline>-<version> for each pipeline an image serves.
# The :<pipeline> tags of segment-anything-2, audio-to-text and text-to-speech are the names
# go-livepeer pulls; the others let an operator pin an image per pipeline.
function "pipeline_tags" {
  params = [pipelines]
  result = flatten([for p in pipelines : ["${REGISTRY}/${REPOSITORY}:${p}", "${REGISTRY}/${REPOSITORY}:${p}-${VERSION}"]])
}

# <repo>:<pipeline>-<family> and <repo>:<pipeline>-<family>-<version>.
function "family_tags" {
  params = [pipelines, family]
  result = pipeline_tags([for p in pipelines : "${p}-${family}"])
}

group "default" {
  targets = ["diffusion", "vision", "audio", "speech", "parler"]
}

# What every image shares; bake merges each target's args into these.
target "_common" {
  context    = "."
  dockerfile = "Dockerfile"
  platforms  = ["linux/amd64"]
  args = {
    VERSION             = VERSION
    CUDA_VERSION        = CUDA_VERSION
    TORCH_VERSION       = TORCH_VERSION
    TORCHVISION_VERSION = TORCHVISION_VERSION
  }
}

target "diffusion" {
  inherits = ["_common"]
  args = {
    PIPELINE_GROUP = "diffusion"
  }
  # :latest is what go-livepeer pulls for the diffusion pipelines and image-to-text.
  tags = concat(["${REGISTRY}/${REPOSITORY}:latest", "${REGISTRY}/${REPOSITORY}:${VERSION}"], pipeline_tags(DIFFUSION_PIPELINES))
}

target "vision" {
  inherits = ["_common"]
  args = {
    PIPELINE_GROUP = "vision"
  }
  tags = pipeline_tags(VISION_PIPELINES)
}

target "audio" {
  inherits = ["_common"]
  args = {
    PIPELINE_GROUP = "audio"
  }
  tags = pipeline_tags(AUDIO_PIPELINES)
}

target "speech" {
  inherits = ["_common"]
  args = {
    PIPELINE_GROUP = "speech"
  }
  tags = concat(family_tags(SPEECH_PIPELINES, "bark"), family_tags(SPEECH_PIPELINES, "mms"))
}

target "parler" {
  inherits = ["_common"]
  args = {
    PIPELINE_GROUP = "parler"
  }
  tags = concat(pipeline_tags(PARLER_PIPELINES), family_tags(PARLER_PIPELINES, "parler"))
}

# `docker buildx bake <pipeline>` builds the image that serves it.
group "text-to-image" {
  targets = ["diffusion"]
}

group "image-to-image" {
  targets = ["diffusion"]
}

group "image-to-video" {
  targets = ["diffusion"]
}

group "upscale" {
  targets = ["diffusion"]
}

group "image-to-text" {
  targets = ["diffusion"]
}

group "segment-anything-2" {
  targets = ["vision"]
}

group "audio-to-text" {
  targets = ["audio"]
}

group "text-to-speech" {
  targets = ["parler", "speech"]
}
