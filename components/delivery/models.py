"""Strict loading of Kubernetes objects into their SDK models (kserve, kubernetes).

The SDKs' own deserializers drop unknown keys silently, and kserve's cannot resolve the
core types (V1ObjectMeta, V1Container) its models embed. `load_model` walks the
OpenAPI type map of the models instead, resolving a class name in kserve's models
first and the kubernetes client's second, and fails on any key a model does not
declare, so a misspelled field in a manifest (`storageUrl`) is an error, not a no-op.
`round_trip` then serializes the model back; an object that survives unchanged uses
only fields and types the SDK knows.
"""

from __future__ import annotations

import re
from typing import Any

from components.delivery.errors import GitOpsError

_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}
_LIST = re.compile(r"^list\[(?P<inner>.+)\]$")
_DICT = re.compile(r"^dict\((?P<key>[^,]+),\s*(?P<value>.+)\)$")

KINDS: dict[tuple[str, str], str] = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): (
        "V1alpha1ClusterServingRuntime"
    ),
}
"""Custom resources plumb ships, and the SDK model each one loads into."""


class ModelFieldError(GitOpsError):
    """A manifest has a field its SDK model does not declare, or a wrong type."""


def resolve_class(name: str) -> type:
    """Find an SDK model class by name: kserve's models, then the kubernetes client's."""
    import kserve
    from kubernetes.client import models as k8s_models

    for module in (kserve, k8s_models):
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    raise ModelFieldError(f"no SDK model named {name!r} in kserve or kubernetes")


def load_model(data: Any, klass: str | type, *, path: str = "") -> Any:
    """Build the SDK model `klass` from a manifest dict, rejecting unknown fields.

    Raises:
        ModelFieldError: A key the model does not declare, or a value of the wrong
            type, with its path in the object (e.g. spec.predictor.model.storageUrl).
    """
    if data is None:
        return None
    if isinstance(klass, str):
        if match := _LIST.match(klass):
            if not isinstance(data, list):
                raise ModelFieldError(f"{path or '.'}: expected a list, got {data!r}")
            return [
                load_model(item, match["inner"], path=f"{path}[{index}]")
                for index, item in enumerate(data)
            ]
        if match := _DICT.match(klass):
            if not isinstance(data, dict):
                raise ModelFieldError(f"{path or '.'}: expected a map, got {data!r}")
            return {
                key: load_model(value, match["value"], path=f"{path}.{key}")
                for key, value in data.items()
            }
        if klass in _PRIMITIVES:
            allowed = _PRIMITIVES[klass]
            if isinstance(data, bool) and bool not in allowed:
                raise ModelFieldError(f"{path}: expected {klass}, got {data!r}")
            if not isinstance(data, allowed):
                raise ModelFieldError(f"{path}: expected {klass}, got {data!r}")
            return data
        if klass in ("object", "date", "datetime"):
            return data
        klass = resolve_class(klass)
    return _load_object(data, klass, path=path)


def _load_object(data: Any, cls: type, *, path: str) -> Any:
    if not isinstance(data, dict):
        raise ModelFieldError(
            f"{path or '.'}: expected an object ({cls.__name__}), got {data!r}"
        )
    attribute_map: dict[str, str] = getattr(cls, "attribute_map", {})
    openapi_types: dict[str, str] = getattr(cls, "openapi_types", {})
    by_json_key = {json_key: attr for attr, json_key in attribute_map.items()}
    unknown = sorted(set(data) - set(by_json_key))
    if unknown:
        where = f"{path}." if path else ""
        raise ModelFieldError(
            f"{where}{unknown[0]}: {cls.__name__} has no field {unknown[0]!r}; "
            f"known fields: {', '.join(sorted(by_json_key))}"
        )
    kwargs = {
        by_json_key[key]: load_model(
            value,
            openapi_types[by_json_key[key]],
            path=f"{path}.{key}" if path else key,
        )
        for key, value in data.items()
    }
    return cls(**kwargs)


def round_trip(manifest: dict[str, Any]) -> dict[str, Any]:
    """Load a custom resource into its SDK model and serialize it back.

    Raises:
        ModelFieldError: The kind is not one of `KINDS`, or a field is unknown.
    """
    from kubernetes.client import ApiClient

    key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
    if key not in KINDS:
        raise ModelFieldError(
            f"no SDK model for {key[1]} ({key[0]}); known: "
            + ", ".join(f"{kind} ({api})" for api, kind in KINDS)
        )
    model = load_model(manifest, KINDS[key])
    result: dict[str, Any] = ApiClient().sanitize_for_serialization(model)
    return result
