"""The official SDKs against the target: the reference promises "a single line of code"."""

from __future__ import annotations

import pytest

from conformance import expect
from conformance.sdk import python_client, raised, run_node
from opconform.client import ApiClient
from opconform.config import Target

pytestmark = pytest.mark.area("sdk")
requirement = pytest.mark.requirement


@requirement("OP-SDK-001")
@pytest.mark.needs("OP-STREAM-007")  # an SDK stream waits for [DONE] too
def test_python_sdk_lists_completes_streams(
    api: ApiClient, bulk_key: str, model: str, target: Target
) -> None:
    import openai

    api.pacer.before(bulk_key, needed=4)  # the SDK's own requests bypass the suite's pacing
    client = python_client(api, target, bulk_key)
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
        raise  # a 429 this check did not provoke: the harness's (or OP-RL-007's), not the SDK's
    except openai.OpenAIError as exc:
        raise expect.Deviation(
            f"the Python SDK failed in {step}: {type(exc).__name__}: {exc}", *stands_on[step]
        ) from None
    if not ("".join(parts) and finish):
        raise expect.Deviation(
            f"the stream ended without text or finish_reason ({finish})", *stands_on[step]
        )


@requirement("OP-SDK-002")
@pytest.mark.needs("OP-AUTH-004", "OP-AUTH-005")
def test_python_sdk_maps_401_and_403(
    api: ApiClient, bulk_key: str, target: Target, model: str
) -> None:
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
        if on_403 != "PermissionDeniedError":
            raise expect.Deviation(
                f"Python SDK on a forbidden model raised {on_403}, not PermissionDeniedError",
                "OP-SDK-001",
            )


@requirement("OP-SDK-003")
@pytest.mark.needs("OP-STREAM-007")  # an SDK stream waits for [DONE] too
def test_node_sdk_lists_completes_streams(
    api: ApiClient, bulk_key: str, model: str, target: Target
) -> None:
    api.pacer.before(bulk_key, needed=4)  # the SDK's own requests bypass the suite's pacing
    result = run_node(api, target, "basic", key=bulk_key, model=model)
    if "RateLimitError" in str(result.get("error", "")):
        raise RuntimeError(f"unexpected 429 in the Node SDK: {result['error']}")
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


@requirement("OP-SDK-004")
@pytest.mark.needs("OP-AUTH-004", "OP-AUTH-005", "OP-MODELS-001")
def test_node_sdk_maps_401_and_403(api: ApiClient, bulk_key: str, target: Target) -> None:
    result = run_node(
        api, target, "errors", key=bulk_key, restricted_model=target.restricted_model or ""
    )
    # As for Python: a Node SDK the target does not serve at all is OP-SDK-003's root.
    if result.get("authentication") != "AuthenticationError":
        raise expect.Deviation(f"Node SDK on 401: {result}", "OP-SDK-003")
    if "permission" in result and result["permission"] != "PermissionDeniedError":
        raise expect.Deviation(f"Node SDK on 403: {result}", "OP-SDK-003")
