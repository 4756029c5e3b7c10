"""The one way the rest of opconform gets a schema or a validator.

The files carry no `$id`: their `$ref`s are relative file names, which resolve the same way for
file-based OpenAPI tools (schemathesis, openapi-spec-validator reading `openapi.yaml`) and for the
registry below, where every file is registered under its own file name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR = Path(__file__).resolve().parent
OPENAPI_PATH = SCHEMA_DIR / "openapi.yaml"

SCHEMA_NAMES = (
    "chat-completion-request",
    "chat-completion-response",
    "chat-completion-chunk",
    "usage",
    "error",
    "model",
    "model-list",
    "rate-limit-headers",
)


def _file_name(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    return f"{name}.schema.json"


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed schema document `name` (e.g. "chat-completion-response")."""
    data: dict[str, Any] = json.loads((SCHEMA_DIR / _file_name(name)).read_text(encoding="utf-8"))
    return data


@cache
def registry() -> Registry:
    resources = [
        (_file_name(name), Resource.from_contents(load(name), default_specification=DRAFT202012))
        for name in SCHEMA_NAMES
    ]
    return Registry().with_resources(resources).crawl()


@cache
def validator(name: str) -> Draft202012Validator:
    """A cached validator for schema `name`; `$ref`s to sibling files resolve offline."""
    # Validate through a reference so the root's base URI is its file name, as on disk.
    return Draft202012Validator({"$ref": _file_name(name)}, registry=registry())


@cache
def fast_check(name: str) -> Callable[[Any], bool]:
    """A compiled is-valid test of schema `name` for hot paths (the gateway validates every
    request): jsonschema-rs runs it in well under a microsecond where the Python validator takes
    ~90 us. Same schema file; error messages still come from `validator(name)`."""
    try:
        import jsonschema_rs

        registry = jsonschema_rs.Registry(
            [(_file_name(other), load(other)) for other in SCHEMA_NAMES]
        )
        compiled = jsonschema_rs.validator_for({"$ref": _file_name(name)}, registry=registry)
    except Exception:  # not installed, or a build without registries: stay correct, be slower
        return validator(name).is_valid
    check: Callable[[Any], bool] = compiled.is_valid
    return check


@cache
def schema_hashes() -> dict[str, str]:
    """sha256 of every contract file, so a report says exactly which contract it checked."""
    files = [_file_name(name) for name in SCHEMA_NAMES] + [OPENAPI_PATH.name]
    return {file: hashlib.sha256((SCHEMA_DIR / file).read_bytes()).hexdigest() for file in files}
