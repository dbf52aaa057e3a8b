"""Errors of the delivery commands; all are `PlumbError`s (one line, exit code 2)."""

from __future__ import annotations

from components.common.errors import GateFailedError, PlumbError

__all__ = [
    "GateFailedError",
    "GitOpsError",
    "KfpAuthError",
    "KfpUnreachableError",
    "SubmitError",
]


class SubmitError(PlumbError):
    """The pipeline could not be submitted, or the run did not succeed."""


class KfpUnreachableError(SubmitError):
    """No Kubeflow Pipelines API answers at the given host."""


class KfpAuthError(SubmitError):
    """The Kubeflow Pipelines API refused the credentials (401/403)."""


class GitOpsError(PlumbError):
    """The repository or an overlay is not in a state a promotion can work on."""
