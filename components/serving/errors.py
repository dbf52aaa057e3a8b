"""The one place where the model server turns errors into HTTP status codes.

Bad input (`PlumbError`, kserve's `InvalidInput`) is 400, a body over the byte cap or
a batch over the row cap 413, an unknown model 404, a model that is not loaded 503.
kserve's exception handlers already answer its own `ModelNotFound` (404) and
`ModelNotReady` (503); plumb's errors are converted to kserve's here, and
`rest.client_error_handler` answers the rest, so every answer has kserve's
`{"error": ...}` shape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady

from components.common.errors import PlumbError

logger = logging.getLogger(__name__)


class RequestTooLargeError(PlumbError):
    """A request is larger (in bytes or rows) than the server accepts."""


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


@contextmanager
def kserve_errors() -> Iterator[None]:
    """Re-raise plumb's bad-input errors as kserve's `InvalidInput` (HTTP 400)."""
    try:
        yield
    except RequestTooLargeError:
        raise  # 413 (see http_status)
    except PlumbError as err:
        raise InvalidInput(str(err)) from err
