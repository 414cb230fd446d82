"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, so clients raise
their usual exception types (``BadRequestError``, ``AuthenticationError``, ...).

Messages name the field or the provider and the reason, never a prompt, an answer or a key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error answered to the client with an HTTP status and an OpenAI-shaped body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": TYPES.get(self.status, "api_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, code="invalid_request", param=param)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """The first problem, by field path; the offending value is left out (it may be a prompt)."""
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    path = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(path) or None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{param}: " if param else ""
    return f"{where}{first.get('msg', 'invalid value')}{more}", param


def install_handlers(app: FastAPI) -> None:
    """Every error the app answers, in OpenAI's shape."""

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return exc.response()

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        return APIError(400, message, code="invalid_request", param=param).response()

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, str(exc.detail), code=code).response()

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
