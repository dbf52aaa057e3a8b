"""The one place that names the container images plumb's components run in.

The compiled pipeline embeds these names, so changing them here and running
`plumb compile` retargets every step at once.
"""

from __future__ import annotations

REGISTRY = "ghcr.io/plumb-mlops"
TAG = "0.1.0"

PIPELINE_IMAGE = f"{REGISTRY}/plumb:{TAG}"
"""Runs preprocess, compress, evaluate, deploy and monitor (and single-process training)."""
