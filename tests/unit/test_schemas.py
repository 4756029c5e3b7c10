"""The contract schemas: valid 2020-12, documented examples pass, invalid instances fail for the
right reason, and the OpenAPI document loads in standard tools."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from opconform.schemas.loader import OPENAPI_PATH, SCHEMA_NAMES, load, schema_hashes, validator


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_2020_12(name: str) -> None:
    schema = load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_documented_examples_validate(name: str) -> None:
    examples = load(name)["examples"]
    assert examples, f"{name} carries no examples"
    for example in examples:
        assert not list(validator(name).iter_errors(example))


RESPONSE = load("chat-completion-response")["examples"][0]
CHUNK = load("chat-completion-chunk")["examples"][1]


def _without(document: dict[str, Any], *path: Any) -> dict[str, Any]:
    import copy

    clone = copy.deepcopy(document)
    target = clone
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return clone


def _with(document: dict[str, Any], value: Any, *path: Any) -> dict[str, Any]:
    import copy

    clone = copy.deepcopy(document)
    target = clone
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return clone


REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

# (schema, instance, the keyword that must reject it, the path it must point at)
INVALID = [
    ("chat-completion-request", {"messages": REQUEST["messages"]}, "required", ""),
    ("chat-completion-request", {"model": "m"}, "required", ""),
    ("chat-completion-request", {**REQUEST, "model": 7}, "type", "model"),
    ("chat-completion-request", {**REQUEST, "messages": []}, "minItems", "messages"),
    ("chat-completion-request", {**REQUEST, "temperature": 2.5}, "maximum", "temperature"),
    ("chat-completion-request", {**REQUEST, "temperature": -1}, "minimum", "temperature"),
    ("chat-completion-request", {**REQUEST, "max_tokens": 0}, "minimum", "max_tokens"),
    ("chat-completion-request", {**REQUEST, "max_tokens": 1.5}, "type", "max_tokens"),
    ("chat-completion-request", {**REQUEST, "stream": "yes"}, "type", "stream"),
    (
        "chat-completion-request",
        {**REQUEST, "messages": [{"role": "bot", "content": "x"}]},
        "enum",
        "messages/0/role",
    ),
    (
        "chat-completion-request",
        {**REQUEST, "messages": [{"role": "user"}]},
        "required",
        "messages/0",
    ),
    ("chat-completion-response", _without(RESPONSE, "usage"), "required", ""),
    (
        "chat-completion-response",
        _with(RESPONSE, "chat.completion.chunk", "object"),
        "const",
        "object",
    ),
    ("chat-completion-response", _with(RESPONSE, "1700000000", "created"), "type", "created"),
    (
        "chat-completion-response",
        _with(RESPONSE, "done", "choices", 0, "finish_reason"),
        "enum",
        "choices/0/finish_reason",
    ),
    (
        "chat-completion-response",
        _with(RESPONSE, "user", "choices", 0, "message", "role"),
        "const",
        "choices/0/message/role",
    ),
    ("chat-completion-chunk", _with(CHUNK, "chat.completion", "object"), "const", "object"),
    ("chat-completion-chunk", _without(CHUNK, "choices", 0, "delta"), "required", "choices/0"),
    ("usage", {"prompt_tokens": 1, "completion_tokens": 2}, "required", ""),
    (
        "usage",
        {"prompt_tokens": -1, "completion_tokens": 2, "total_tokens": 1},
        "minimum",
        "prompt_tokens",
    ),
    ("error", {"error": {"message": "m", "code": 401}}, "required", "error"),
    (
        "error",
        {"error": {"message": "m", "type": "t", "code": "invalid_api_key"}},
        "type",
        "error/code",
    ),
    ("error", {"message": "m"}, "required", ""),
    ("model", {"id": "x", "object": "model", "created": 1}, "required", ""),
    ("model-list", {"object": "models", "data": []}, "const", "object"),
    ("model-list", {"object": "list", "data": [{"id": "x"}]}, "required", "data/0"),
    (
        "rate-limit-headers",
        {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "59"},
        "required",
        "",
    ),
    (
        "rate-limit-headers",
        {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "59", "x-ratelimit-reset": "soon"},
        "pattern",
        "x-ratelimit-reset",
    ),
]


@pytest.mark.parametrize(
    ("name", "instance", "keyword", "where"),
    INVALID,
    ids=[f"{n}-{k}-{w or 'root'}" for n, _, k, w in INVALID],
)
def test_invalid_instance_rejected_for_the_right_reason(
    name: str, instance: Any, keyword: str, where: str
) -> None:
    errors = list(validator(name).iter_errors(instance))
    reasons = {(e.validator, "/".join(str(p) for p in e.absolute_path)) for e in errors}
    leaves = {
        (e.validator, "/".join(str(p) for p in e.absolute_path))
        for error in errors
        for e in (error.context or [])
    }
    assert (keyword, where) in reasons | leaves, f"rejected for {reasons} {leaves}, not {keyword}"


def test_openapi_document_is_valid() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename

    document, base_uri = read_from_filename(str(OPENAPI_PATH))
    validate(document, base_uri=base_uri)
    assert set(document["paths"]) == {"/models", "/models/{model}", "/chat/completions"}
    responses = document["paths"]["/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "403", "429", "500", "502", "503"} <= set(responses)


def test_schemathesis_loads_openapi() -> None:
    import schemathesis

    spec = schemathesis.openapi.from_path(str(OPENAPI_PATH))
    operations = []
    for result in spec.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # raises if the document is broken
        operations.append((operation.method.upper(), operation.path))
    assert set(operations) == {
        ("GET", "/models"),
        ("GET", "/models/{model}"),
        ("POST", "/chat/completions"),
    }


def test_schema_hashes_cover_every_file() -> None:
    hashes = schema_hashes()
    assert len(hashes) == len(SCHEMA_NAMES) + 1
    assert all(len(h) == 64 for h in hashes.values())


def test_openapi_names_every_schema_and_describes_each_event() -> None:
    import yaml

    document = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.2.")
    named = document["components"]["schemas"]
    files = {schema["$ref"] for schema in named.values() if "$ref" in schema}
    assert files == {f"{name}.schema.json" for name in SCHEMA_NAMES}
    content = document["paths"]["/chat/completions"]["post"]["responses"]["200"]["content"]
    stream = content["text/event-stream"]
    assert stream == {"itemSchema": {"$ref": "#/components/schemas/ChatCompletionStreamEvent"}}
    data = named["ChatCompletionStreamEvent"]["properties"]["data"]["anyOf"]
    assert {"const": "[DONE]"}.items() <= data[0].items()
    assert data[1]["contentMediaType"] == "application/json"
    assert {"$ref": "#/components/schemas/ChatCompletionChunk"} in data[1]["contentSchema"]["anyOf"]
