"""What the gateway's answers are made of: the JSON encoder, the documented error answer, the
stream's last event."""

from __future__ import annotations

from typing import Any

import orjson

JSON = "application/json"
DONE_EVENT = b"data: [DONE]\n\n"
# orjson: compact UTF-8 JSON in ~0.2 us where the json module takes ~3 us; every answer and
# every streamed event goes through it.
dumps = orjson.dumps

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "upstream_error",
    503: "service_unavailable",
}
MIDSTREAM_ERROR = {
    "message": "The upstream provider failed mid-stream.",
    "type": "upstream_error",
    "code": 502,
}


class ApiError(Exception):
    """An answer with the documented error body."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.error_type = error_type or ERROR_TYPES.get(status, "api_error")

    def body(self) -> dict[str, Any]:
        """The inside of the answer's {"error": ...}."""
        return {"message": self.message, "type": self.error_type, "code": self.status}
