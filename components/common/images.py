"""The one place that names the container images plumb runs in.

The compiled pipeline, the kustomize manifests and the Helm chart all name these
images; changing `REGISTRY` or `TAG` here and running `plumb compile` retargets every
pipeline step, and `tests/delivery` fails until the manifests and the chart agree.
`python -m components.common.images` lists each image with the Dockerfile that builds it
(scripts/build-images.sh reads that list).
"""

from __future__ import annotations

from dataclasses import dataclass

REGISTRY = "ghcr.io/plumb-mlops"
TAG = "0.1.0"


@dataclass(frozen=True)
class Image:
    """One of plumb's container images and the Dockerfile that builds it."""

    name: str
    """Repository name under `REGISTRY`, e.g. `plumb-predictor`."""
    dockerfile: str
    """Path of the Dockerfile relative to the repository root."""

    @property
    def ref(self) -> str:
        """The full reference, `REGISTRY/name:TAG`."""
        return f"{REGISTRY}/{self.name}:{TAG}"


BASE = Image("plumb-base", "dockerfiles/base.Dockerfile")
PIPELINE = Image("plumb", "dockerfiles/pipeline.Dockerfile")
TRAINING_TORCH = Image("plumb-training-torch", "dockerfiles/training-torch.Dockerfile")
TRAINING_TF = Image("plumb-training-tf", "dockerfiles/training-tf.Dockerfile")
PREDICTOR = Image("plumb-predictor", "dockerfiles/predictor.Dockerfile")
MONITOR = Image("plumb-monitor", "dockerfiles/monitor.Dockerfile")

IMAGES: tuple[Image, ...] = (
    BASE,
    PIPELINE,
    TRAINING_TORCH,
    TRAINING_TF,
    PREDICTOR,
    MONITOR,
)
"""Every image, the base first (the others build on it)."""

PIPELINE_IMAGE = PIPELINE.ref
"""Runs preprocess, compress, evaluate, deploy and monitor (and single-process training)."""
TRAINING_TORCH_IMAGE = TRAINING_TORCH.ref
"""PyTorch DDP workers (TrainJob / PyTorchJob); CPU torch unless built with a CUDA index."""
TRAINING_TF_IMAGE = TRAINING_TF.ref
"""TensorFlow MultiWorkerMirroredStrategy workers (TFJob)."""
PREDICTOR_IMAGE = PREDICTOR.ref
"""plumb's KServe predictor, the container of the `plumb-onnx` ServingRuntime."""
MONITOR_IMAGE = MONITOR.ref
"""The drift monitor behind the `plumb-monitor` Service."""


if __name__ == "__main__":
    import sys

    for image in IMAGES:
        sys.stdout.write(f"{image.name} {image.dockerfile} {image.ref}\n")
