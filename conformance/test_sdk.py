"""The official SDKs against the target: the reference promises "a single line of code"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pytest

from opconform.client import ApiClient, LimitSpent
from opconform.conformance import expect
from opconform.conformance.prefetch import BULK, Pending, job
from opconform.conformance.sdk import (
    GO_STEPS,
    go_typed_error,
    python_client,
    raised,
    run_go,
    run_node,
    sdk_refused,
)
from opconform.ratelimit import PacingStopped
from opconform.target import Target

T = TypeVar("T")

requirement = pytest.mark.requirement


def _with_room(
    api: ApiClient, key: str, sdk: str, attempt: Callable[[], T], met_429: Callable[[T], bool]
) -> T:
    """Run an SDK scenario with room for its requests in the key's window (the SDK's own
    requests bypass the suite's pacing). A 429 the plan explains (the window spent before the
    run could see one from its start) means: wait for the key's window, run it once more."""
    api.pacer.before(key, needed=4)
    result = attempt()
    if not met_429(result):
        return result
    unexplained = _limit_deviation(api, key, sdk)
    if unexplained is not None:
        raise unexplained
    try:
        api.pacer.wait_out_429(key, {})
    except PacingStopped as exc:
        raise LimitSpent(str(exc)) from None
    result = attempt()
    if met_429(result):
        raise expect.Deviation(f"{sdk} met a 429 again after a whole window", "OP-RL-007")
    return result


def _limit_deviation(api: ApiClient, key: str, sdk: str) -> expect.Deviation | None:
    """An SDK met a 429 on `key` that it did not provoke: the requirement the pacing's judgement
    names (the key states less than its plan, the run's keys share a window, or a limit below
    the plan), or None when the plan explains it."""
    stated = api.pacer.stated_below_plan(key)
    if stated is not None:
        return expect.Deviation(f"{sdk} met a 429: {stated}", "OP-RL-004")
    explained = api.pacer.explains_429(key)
    if explained is not None:
        return None
    shared = api.pacer.shared_window(key)
    if shared is not None:
        return expect.Deviation(f"{sdk}: {shared}", "OP-RL-012")
    return expect.Deviation(
        f"{sdk} met a 429 on the {key} key with fewer requests in the window than "
        f"{api.pacer.describe(key)} allows",
        "OP-RL-007",
    )


def _on_restricted_429(api: ApiClient, sdk: str) -> NoReturn:
    """The forbidden-model case met a 429 instead of an answer about permission."""
    unexplained = _limit_deviation(api, "restricted", sdk)
    if unexplained is not None:
        raise unexplained
    pytest.skip(f"{sdk}: the restricted key met a 429 the plan explains: no 403 to judge")


@job(sends={BULK: 3}, after_streams=True)
def python_sdk_lists_completes_streams(
    api: ApiClient, bulk_key: str, model: str, target: Target
) -> None:
    import openai

    client = python_client(api, target, bulk_key)

    def attempt() -> str | None:
        try:
            _python_lists_completes_streams(client, model)
        except openai.RateLimitError as exc:
            return str(exc)
        return None

    _with_room(api, bulk_key, "the Python SDK", attempt, lambda met: met is not None)


@requirement("OP-SDK-001")
def test_python_sdk_lists_completes_streams(python_sdk_lists_completes_streams: Pending) -> None:
    python_sdk_lists_completes_streams.take()


def _python_lists_completes_streams(client: Any, model: str) -> None:
    import openai

    step = "models.list()"
    # A step that fails because the wire answer already breaks a requirement is blocked by it.
    stands_on = {
        "models.list()": ("OP-MODELS-001",),
        "chat.completions.create()": ("OP-CHAT-007", "OP-CHAT-001"),
        "a stream": ("OP-STREAM-001", "OP-STREAM-002", "OP-STREAM-007"),
    }
    try:
        listed = [m.id for m in client.models.list()]
        if model not in listed:
            raise expect.Deviation(f"models.list() does not contain {model}", "OP-MODELS-001")
        step = "chat.completions.create()"
        completion = client.chat.completions.create(**expect.chat_request(model))
        assert completion.choices[0].message.content, "the completion has no content"
        step = "a stream"
        parts, finish = [], None
        for chunk in client.chat.completions.create(stream=True, **expect.chat_request(model)):
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
    except openai.RateLimitError:
        raise  # a 429 this check did not provoke: the pacing's to judge (_with_room)
    except openai.OpenAIError as exc:
        raise expect.Deviation(
            f"the Python SDK failed in {step}: {type(exc).__name__}: {exc}", *stands_on[step]
        ) from None
    if not ("".join(parts) and finish):
        raise expect.Deviation(
            f"the stream ended without text or finish_reason ({finish})", *stands_on[step]
        )


@job(others=("restricted",), sends={BULK: 1, "restricted": 1}, after_streams=True)
def python_sdk_maps_401_and_403(api: ApiClient, bulk_key: str, target: Target, model: str) -> None:
    client = python_client(api, target, bulk_key).with_options(
        api_key="op_sk_opconform_unknown_python_check"
    )
    request = expect.chat_request(model, max_tokens=4)
    on_401 = raised(lambda: client.chat.completions.create(**request))
    # An SDK the target does not serve at all (OP-SDK-001 broken) meets no 401 or 403 of its
    # own: that is the root, when it is broken; else the mapping is this check's deviation.
    if on_401 != "AuthenticationError":
        raise expect.Deviation(f"Python SDK on a 401 raised {on_401}", "OP-SDK-001")
    if api.has_key("restricted") and target.restricted_model:
        restricted = python_client(api, target, "restricted")
        body = expect.chat_request(target.restricted_model, max_tokens=4)
        on_403 = raised(lambda: restricted.chat.completions.create(**body))
        if on_403 == "RateLimitError":
            _on_restricted_429(api, "the Python SDK")
        if on_403 != "PermissionDeniedError":
            raise expect.Deviation(
                f"Python SDK on a forbidden model raised {on_403}, not PermissionDeniedError",
                "OP-SDK-001",
            )


@requirement("OP-SDK-002")
@pytest.mark.needs("OP-AUTH-004", "OP-AUTH-005")  # it provokes a 401 and a 403
def test_python_sdk_maps_401_and_403(python_sdk_maps_401_and_403: Pending) -> None:
    python_sdk_maps_401_and_403.take()


@job(sends={BULK: 3}, after_streams=True)
def node_sdk_lists_completes_streams(
    api: ApiClient, bulk_key: str, model: str, target: Target
) -> None:
    result = _with_room(
        api,
        bulk_key,
        "the Node SDK",
        lambda: run_node(api, target, "basic", key=bulk_key, model=model),
        lambda result: "RateLimitError" in str(result.get("error", "")),
    )
    if "error" in result:
        raise expect.Deviation(
            f"the Node SDK failed: {result['error']}",
            "OP-MODELS-001",
            "OP-CHAT-007",
            "OP-CHAT-001",
            "OP-STREAM-002",
            "OP-STREAM-007",
        )
    assert result.get("models", 0) > 0 and result.get("completion"), f"Node SDK: {result}"
    assert result.get("streamed") and result.get("finish_reason"), (
        f"the Node SDK stream ended without text or finish_reason: {result}"
    )


@requirement("OP-SDK-003")
def test_node_sdk_lists_completes_streams(node_sdk_lists_completes_streams: Pending) -> None:
    node_sdk_lists_completes_streams.take()


@job(others=("restricted",), sends={BULK: 2}, after_streams=True)
def node_sdk_maps_401_and_403(api: ApiClient, bulk_key: str, target: Target) -> None:
    result = run_node(
        api, target, "errors", key=bulk_key, restricted_model=target.restricted_model or ""
    )
    # As for Python: a Node SDK the target does not serve at all is OP-SDK-003's root.
    if result.get("authentication") != "AuthenticationError":
        raise expect.Deviation(f"Node SDK on 401: {result}", "OP-SDK-003")
    if result.get("permission") == "RateLimitError":
        _on_restricted_429(api, "the Node SDK")
    if "permission" in result and result["permission"] != "PermissionDeniedError":
        raise expect.Deviation(f"Node SDK on 403: {result}", "OP-SDK-003")


@requirement("OP-SDK-004")
@pytest.mark.needs("OP-AUTH-004", "OP-AUTH-005", "OP-MODELS-001")  # 401 and 403 on GET /models
def test_node_sdk_maps_401_and_403(node_sdk_maps_401_and_403: Pending) -> None:
    node_sdk_maps_401_and_403.take()


# ---------------------------------------------------------------------------- Go
# go-openai (the SDK the reference names) and openai-go (OpenAI's official Go SDK), each its own
# check, run by the Go runner in conformance/go (DISABLED without go or its modules).


def _go_lists_completes_streams(
    api: ApiClient, bulk_key: str, model: str, target: Target, library: str
) -> None:
    result = _with_room(
        api,
        bulk_key,
        library,
        lambda: run_go(api, target, library, "basic", key=bulk_key, model=model),
        lambda result: result.get("outcome", {}).get("status") == 429,
    )
    if result.get("outcome", {}).get("sent") is False:
        pytest.skip(sdk_refused(library, str(result.get("step")), str(result["error"])))
    if "error" in result:
        raise expect.Deviation(
            f"{library} failed in {result['error']}", *GO_STEPS.get(result.get("step"), ())
        )
    if not result.get("has_model"):
        raise expect.Deviation(
            f"{library}: the model list does not contain {model}", "OP-MODELS-001"
        )
    assert result.get("completion"), f"{library}: the completion has no content: {result}"
    assert result.get("streamed") and result.get("finish_reason"), (
        f"{library}: the stream ended without text or finish_reason: {result}"
    )


def _go_typed_errors(api: ApiClient, bulk_key: str, target: Target, library: str) -> None:
    restricted = target.restricted_model if api.has_key("restricted") else None
    # The 404 is asked with the bulk key (the 401 and 403 use other keys): a 429 for it is the
    # pacing's to judge, not the SDK's.
    result = _with_room(
        api,
        bulk_key,
        library,
        lambda: run_go(
            api, target, library, "errors", key=bulk_key, restricted_model=restricted or ""
        ),
        lambda result: result.get("not_found", {}).get("status") == 429,
    )
    if "error" in result:
        raise RuntimeError(f"the {library} runner: {result['error']}")
    go_typed_error(library, "an unknown key", result["authentication"], 401, "OP-AUTH-004")
    go_typed_error(library, "an unknown model id", result["not_found"], 404, "OP-MODELS-005")
    if "permission" in result:  # last: the SDK may refuse the restricted model's max_tokens
        if result["permission"].get("status") == 429:
            _on_restricted_429(api, library)
        go_typed_error(library, "a forbidden model", result["permission"], 403, "OP-AUTH-005")


@job(sends={BULK: 3}, after_streams=True)
def go_openai_lists_completes_streams(
    api: ApiClient, bulk_key: str, model: str, target: Target
) -> None:
    _go_lists_completes_streams(api, bulk_key, model, target, "go-openai")


@requirement("OP-SDK-006")
def test_go_openai_lists_completes_streams(go_openai_lists_completes_streams: Pending) -> None:
    go_openai_lists_completes_streams.take()


@job(others=("restricted",), sends={BULK: 3}, after_streams=True)
def go_openai_returns_typed_errors(api: ApiClient, bulk_key: str, target: Target) -> None:
    _go_typed_errors(api, bulk_key, target, "go-openai")


@requirement("OP-SDK-007")
@pytest.mark.needs("OP-AUTH-004", "OP-AUTH-005")  # it provokes a 401 and a 403
def test_go_openai_returns_typed_errors(go_openai_returns_typed_errors: Pending) -> None:
    go_openai_returns_typed_errors.take()


@job(sends={BULK: 3}, after_streams=True)
def openai_go_lists_completes_streams(
    api: ApiClient, bulk_key: str, model: str, target: Target
) -> None:
    _go_lists_completes_streams(api, bulk_key, model, target, "openai-go")


@requirement("OP-SDK-008")
def test_openai_go_lists_completes_streams(openai_go_lists_completes_streams: Pending) -> None:
    openai_go_lists_completes_streams.take()


@job(others=("restricted",), sends={BULK: 3}, after_streams=True)
def openai_go_returns_typed_errors(api: ApiClient, bulk_key: str, target: Target) -> None:
    _go_typed_errors(api, bulk_key, target, "openai-go")


@requirement("OP-SDK-009")
@pytest.mark.needs("OP-AUTH-004", "OP-AUTH-005")  # it provokes a 401 and a 403
def test_openai_go_returns_typed_errors(openai_go_returns_typed_errors: Pending) -> None:
    openai_go_returns_typed_errors.take()
