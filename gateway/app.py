"""The reference gateway as an ASGI application (Starlette): the contract's routes and error
handlers (gateway/contract.py), with the faults as hooks around them (gateway/fault_hooks.py)
only when some fault is switched on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from opconform.gateway.contract import Gateway
from opconform.gateway.fault_hooks import FaultyGateway
from opconform.gateway.settings import GatewayConfig
from opconform.gateway.wire import ApiError


def create_app(config: GatewayConfig) -> Starlette:
    gateway = FaultyGateway(config) if config.faults else Gateway(config)
    routes = [  # the busiest route first: Starlette tries them in order
        Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/v1/models", gateway.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", gateway.retrieve_model, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: gateway.api_error,
        HTTPException: gateway.not_found,
        Exception: gateway.server_error,
    }
    return Starlette(routes=routes, exception_handlers=handlers, middleware=gateway.middleware())
