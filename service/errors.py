"""Errors as JSON: ``{"error": {"code": ..., "message": ...}}`` with the right HTTP status;
the model of that body, which the routes' OpenAPI ``responses`` document (``error_responses``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from service.batching import Rejected

_REJECTED_STATUS = {"queue_full": 503, "shutting_down": 503, "deadline": 504}
_HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class ErrorInfo(BaseModel):
    code: str = Field(description="stable and machine-readable, e.g. queue_full, corrupt_image")
    message: str = Field(description="for people: what was wrong, and what was expected")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorInfo


RETRY_AFTER_HEADER: dict[str, Any] = {
    "Retry-After": {
        "description": "whole seconds to wait before sending the request again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
"""The OpenAPI ``headers`` of an answer that says when to try again."""


def error_responses(
    descriptions: Mapping[int, str], *, retry_after: Collection[int] = ()
) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI ``responses`` for its error statuses (status -> when it answers it),
    each with the ``ErrorResponse`` body; the ``retry_after`` statuses always come with
    ``Retry-After``."""
    return {
        status: {
            "model": ErrorResponse,
            "description": description,
            **({"headers": RETRY_AFTER_HEADER} if status in retry_after else {}),
        }
        for status, description in descriptions.items()
    }


class ServiceError(Exception):
    """An error the client should see: status, a stable machine-readable code, a message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _service_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    return error_response(error.status, error.code, error.message, headers=error.headers)


def rejection_response(error: Rejected) -> JSONResponse:
    """The answer to a request the batcher refused: 503 or 504, with Retry-After."""
    headers = {"Retry-After": str(error.retry_after_s)}
    return error_response(
        _REJECTED_STATUS[error.reason], error.reason, error.message, headers=headers
    )


async def _rejected(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Rejected)
    return rejection_response(error)


async def _client_disconnect(_: Request, __: Exception) -> JSONResponse:
    """The client went away while its body streamed (or a read timeout closed it): an answer
    nobody reads, instead of a logged traceback."""
    return error_response(499, "client_closed_request", "the client disconnected")


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors()
    ]
    return error_response(422, "invalid_request", "; ".join(problems))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = "not_found" if error.status_code == 404 else f"http_{error.status_code}"
    headers = error.headers
    if error.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return error_response(error.status_code, code, str(error.detail), headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route answers on the request's path: the router's 405 names only the
    methods of the first route whose path matched (``GET`` where ``DELETE`` also works)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Rejected, _rejected)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
