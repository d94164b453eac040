"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, with a
message that is one line a person can act on.

A UserError from the core becomes an answer here, in one place, by its kind: routes
let them propagate (or pass a failed job's error to `api_error`)."""
from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from webui.api.schemas import ErrorResponse
from webui.errors import ErrorKind, UserError

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error", 404: "invalid_request_error",
          409: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error", 503: "server_error"}

# Each kind's HTTP status and code. A failed load or reply is the request's fault as
# far as HTTP can tell (400: the reason says what to change); only a bug is a 500.
# Kinds that had a code before (queue_full, model_not_loaded, generation_failed) keep it.
HTTP_OF_KIND: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID: (400, "invalid_value"),
    ErrorKind.NOT_FOUND: (404, "not_found"),
    ErrorKind.CONFLICT: (409, "conflict"),
    ErrorKind.TOO_LARGE: (413, "too_large"),
    ErrorKind.BUSY: (429, "queue_full"),
    ErrorKind.UNAVAILABLE: (503, "model_not_loaded"),
    ErrorKind.FAILED: (400, "generation_failed"),
    ErrorKind.INTERNAL: (500, "generation_failed"),
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())  # one line, whatever the backend said
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)


def api_error(error: UserError) -> APIError:
    status, code = HTTP_OF_KIND[error.kind]
    return APIError(status, error.message, code=code)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


# Documented on every API route, so /docs and schema-driven clients know them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {400: "The request cannot be served as asked (one-line reason).",
                         401: "Missing or wrong API key.",
                         403: "The key's user may not do this (the model routes take an admin's key).",
                         413: "The request body or prompt is too large.",
                         422: "A parameter is missing, unknown or out of range (one-line reason).",
                         429: "The generation queue is full; try again later.",
                         503: "No model is loaded."}.items()
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_validation_error(exc: RequestValidationError) -> tuple[str, str | None]:
    """pydantic's list of errors -> ("temperature: must be >= 0 (got -1)", "temperature")."""
    errors = exc.errors()
    if not errors:
        return "the request is not valid", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "the request body is not valid JSON", None
    if kind == "extra_forbidden":
        name = ".".join(loc)
        return f"unknown parameter {name!r}", name
    param = ".".join(loc) or None
    message = first.get("msg", "is not valid")
    message = message.removeprefix("Value error, ")
    if kind == "missing":
        text = f"{param} is required" if param else "a request body is required"
    elif "input" in first and kind not in ("model_attributes_type", "dict_type"):
        text = f"{param}: {message} (got {_short(first['input'])})"
    else:
        text = f"{param}: {message}" if param else message
    more = len(errors) - 1
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return text, param


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _user_error(request: Request, exc: UserError) -> JSONResponse:
    return await _api_error(request, api_error(exc))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = describe_validation_error(exc)
    return error_response(422, message, param=param, code="invalid_value")


def install_error_handlers(app) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
