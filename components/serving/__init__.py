"""plumb's KServe predictor: a `kserve.Model` over a plumb model directory.

`kserve.model_server` parses `sys.argv` with its own argparse parser when it is first
imported, so plumb's flags (`--workers abc`, `--port`) could be read, or rejected, by
kserve. Importing kserve here, with only the program name in `sys.argv`, makes kserve
see its defaults; plumb then passes every setting to `ModelServer` explicitly.
"""

from __future__ import annotations

import sys


def _import_kserve_with_default_args() -> None:
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve.model_server  # noqa: F401
    finally:
        sys.argv = saved


_import_kserve_with_default_args()
