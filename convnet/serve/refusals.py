"""What the server answers when it refuses a request: an HTTP status and a JSON
{"error": sentence}, the sentence in the request's language.

Every sentence is a catalog message `server.error.<name>` (convnet/locales), filled with the
refusal's values; whole numbers are written as the language writes them (1,000,000). The
language is the request's `?lang=` (the page sends its own on every call), else the
server's --lang, else the first of the browser's Accept-Language that the catalogs have,
else English. A client that names no language and sends no Accept-Language gets English.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from convnet.errors import UserError
from convnet.i18n import LANGUAGES, choose_language, number, text

# Starlette's own refusals (no route, wrong method), by status; any other keeps its detail.
HTTP_STATUS_MESSAGES = {404: "not_found", 405: "method_not_allowed"}
# Pydantic's kinds of invalid query value (error["type"]) that have a sentence of their own;
# any other kind is told by pydantic's English message (`parameter.other`).
PARAMETER_PROBLEMS = {
    "less_than_equal": "parameter.at_most",
    "greater_than_equal": "parameter.at_least",
    "float_parsing": "parameter.not_a_number",
    "int_parsing": "parameter.not_a_whole_number",
    "int_from_float": "parameter.not_a_whole_number",
    "finite_number": "parameter.not_finite",
    "bool_parsing": "parameter.not_true_or_false",
    "missing": "parameter.missing",
}


def _written(value: object, lang: str) -> str:
    """A value as `lang` writes it: whole numbers grouped (not bools), the rest as they are."""
    if isinstance(value, int) and not isinstance(value, bool):
        return number(value, lang)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class RequestError(Exception):
    """A request the server refuses: an HTTP status, the name of its sentence in the catalogs
    (`server.error.<name>`) with the values that fill it, and response headers."""

    def __init__(
        self, status: int, name: str, headers: dict[str, str] | None = None, **values: object
    ):
        self.status, self.name, self.headers, self.values = status, name, headers, values
        super().__init__(self.message("en"))

    def message(self, lang: str) -> str:
        written = {key: _written(value, lang) for key, value in self.values.items()}
        return text(lang, f"server.error.{self.name}", **written)

    @classmethod
    def from_user_error(cls, status: int, error: UserError) -> RequestError:
        """A lower layer's UserError: its own catalog sentence where it names one
        (`error.key`), else its English text."""
        key = getattr(error, "key", None)
        if key is None:
            return cls(status, "other", message=str(error))
        return cls(status, key, **getattr(error, "values", {}))


def request_language(request: Request, default: str | None) -> str:
    """The language of the answer: ?lang=, else the server's --lang (`default`), else the
    browser's Accept-Language, else English."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    return default or choose_language(request.headers.get("accept-language"))


def refusal(request: Request, error: RequestError, default: str | None) -> JSONResponse:
    lang = request_language(request, default)
    return JSONResponse(
        {"error": error.message(lang)}, status_code=error.status, headers=error.headers
    )


def invalid_parameters(error: RequestValidationError) -> RequestError:
    """One sentence for every invalid query value: "shift_x: must be at most 6"."""
    problems = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"][1:]) or "request"
        key = PARAMETER_PROBLEMS.get(item["type"], "parameter.other")
        context = item.get("ctx") or {}
        limit = context.get("le", context.get("ge", ""))
        problems.append((name, key, {"limit": limit, "message": item["msg"]}))
    return ProblemList(problems)


class ProblemList(RequestError):
    """422 for invalid query values, each problem worded in the answer's language."""

    def __init__(self, problems: list[tuple[str, str, dict]]):
        self.problems = problems
        super().__init__(422, "parameters")

    def message(self, lang: str) -> str:
        told = "; ".join(
            text(
                lang,
                "server.error.parameter",
                name=name,
                problem=text(
                    lang,
                    f"server.error.{key}",
                    **{k: _written(v, lang) for k, v in values.items()},
                ),
            )
            for name, key, values in self.problems
        )
        return text(lang, "server.error.parameters", problems=told)
