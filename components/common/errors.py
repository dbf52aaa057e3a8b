"""Errors plumb raises for bad user input.

Every message names what is wrong, the value received and how to fix it. The CLI turns
a `PlumbError` into one line and exit code 2; the model server and the drift monitor map
it to HTTP 400.
"""

from __future__ import annotations


class PlumbError(ValueError):
    """Bad user input: a config, a dataset, an argument or a request."""


class ConfigError(PlumbError):
    """The configuration file or a `PLUMB_*` variable is invalid."""


class DataError(PlumbError):
    """A dataset cannot be loaded or does not fit what the config asks of it."""


class SchemaError(DataError):
    """Rows do not match the schema recorded at preprocessing."""


class GateFailedError(PlumbError):
    """A model whose evaluation gate failed was asked to ship."""
