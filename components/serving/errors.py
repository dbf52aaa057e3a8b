"""The one place where the model server turns errors into HTTP status codes.

Bad input (`PlumbError`, kserve's `InvalidInput`) is 400, a body over the byte cap or
a batch over the row cap 413, an unknown model 404, a model that is not loaded 503.
kserve's exception handlers already answer its own `ModelNotFound` (404) and
`ModelNotReady` (503); plumb's errors are converted to kserve's here, or answered by
`request_too_large_handler`, so every answer has kserve's `{"error": ...}` shape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady

from components.common.errors import PlumbError

logger = logging.getLogger(__name__)


class RequestTooLargeError(PlumbError):
    """A request is larger (in bytes or rows) than the server accepts."""


async def request_too_large_handler(_: Any, error: Exception) -> JSONResponse:
    """Answer a request over the row cap with 413 and one WARNING line."""
    logger.warning("Refused a request: %s", error)
    return JSONResponse(
        status_code=int(http_status(error)), content={"error": str(error)}
    )


def http_status(error: BaseException) -> HTTPStatus:
    """Return the HTTP status a request that raised `error` is answered with."""
    if isinstance(error, RequestTooLargeError):
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    if isinstance(error, PlumbError | InvalidInput):
        return HTTPStatus.BAD_REQUEST
    if isinstance(error, ModelNotFound):
        return HTTPStatus.NOT_FOUND
    if isinstance(error, ModelNotReady):
        return HTTPStatus.SERVICE_UNAVAILABLE
    return HTTPStatus.INTERNAL_SERVER_ERROR


def install_error_handlers(app: Any) -> None:
    """Answer plumb's 413 on kserve's FastAPI app (in this process; idempotent).

    kserve registers its own handlers when it builds the REST server; this adds the one
    for `RequestTooLargeError`, which kserve does not know. Each `--workers` process
    imports a fresh app, so the model calls this again when it arrives in a worker.
    """
    app.add_exception_handler(RequestTooLargeError, request_too_large_handler)


@contextmanager
def kserve_errors() -> Iterator[None]:
    """Re-raise plumb's bad-input errors as kserve's `InvalidInput` (HTTP 400)."""
    try:
        yield
    except RequestTooLargeError:
        raise  # 413, answered by request_too_large_handler
    except PlumbError as err:
        raise InvalidInput(str(err)) from err
