"""Errors as JSON: ``{"error": {"code": ..., "message": ...}}`` with the right HTTP status."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.batching import Rejected

_REJECTED_STATUS = {"queue_full": 503, "shutting_down": 503, "deadline": 504}


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
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _service_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    return error_response(error.status, error.code, error.message, headers=error.headers)


async def _rejected(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Rejected)
    headers = {"Retry-After": str(error.retry_after_s)}
    return error_response(
        _REJECTED_STATUS[error.reason], error.reason, error.message, headers=headers
    )


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors()
    ]
    return error_response(422, "invalid_request", "; ".join(problems))


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = "not_found" if error.status_code == 404 else f"http_{error.status_code}"
    return error_response(error.status_code, code, str(error.detail), headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Rejected, _rejected)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
