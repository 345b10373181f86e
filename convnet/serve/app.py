"""The web app: a page that draws digits and an API that shows what the networks see.

GET  /                 the page (index.html, its scripts and style.css, in memory)
GET  /api/messages     the page's texts in every language (?lang=ko: in one), the language
                       names for the switch, and the default: --lang, else Accept-Language
GET  /api/models       both networks: name, parameters, test error, how the run was chosen
                       (given / best of N runs / trained now), whether it is undertrained,
                       its recipe, its precision (fp32, or int8 with how it was calibrated
                       and agreed with fp32), and two sentences about it in ?lang (default as for
                       /api/messages); whether the pair differs in architecture only
                       (`pair.matched`, its differences) and which networks the
                       ?cnn_augment=&ordinary_augment= switches can pick (`choices`)
GET  /api/samples      MNIST test digits (?index=N, or a random one; ?count=K ≤ 16)
POST /api/predict      a PNG (drawn or uploaded) or JSON {"pixels": 28×28 of 0…255}, with
                       ?shift_x&shift_y (px, ±6) &rotate (degrees) &scale &noise &seed
                       &cnn_augment&ordinary_augment (which pair answers)
                       → both networks' probabilities (with `serve --precision int8`
                       int8's, fp32's beside them: convnet.serve.quantized), the CNN's
                       feature maps C1…C5 (like all that follows, fp32's), its
                       C1 filters, F6 and output scores (`head`) and `anatomy`, the 28×28
                       pixels the networks saw, and where each looked (Grad-CAM on C3,
                       input saliency: 28×28 maps, centre of mass as [row, column]).

A PNG is prepared as MNIST was (`convnet.data.images.load_digit`: 20×20 box, centred by
mass); JSON pixels are used as given, so a client can move them itself. Requests are
refused with a 4xx JSON {"error": …}, worded in the request's language
(convnet.serve.refusals), when the body passes 1 MB (checked while reading,
never after) or has not all arrived within BODY_SECONDS (408), the image passes 4096 px a
side (checked from its header, before decoding) or anything else is wrong. At most
MAX_BUSY predictions are worked on at once; one more is answered 503 with Retry-After at
once, not queued. A client that goes away mid-body is one log line. No part of a request
names a file: the page's files are read once from the package when the app is made. Every
text the page shows comes from the message catalogs (convnet/locales), which it receives
from /api/messages. docs/reliability.md lists every bound with its number.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from importlib import resources

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from convnet.data.datasets import ImageDataset
from convnet.files import explain
from convnet.i18n import LANGUAGE_NAME, LANGUAGES, choose_language, messages, text
from convnet.serve.bodies import (  # noqa: F401 - the limits are the app's API too
    BODY_SECONDS,
    MAX_BODY_BYTES,
    MAX_IMAGE_SIDE,
    ClientGone,
    digit_from_json,
    digit_from_png,
    read_body_limited,
)
from convnet.serve.inference import View, look
from convnet.serve.models import CNN, ORDINARY, ServedModels
from convnet.serve.refusals import (
    HTTP_STATUS_MESSAGES,
    RequestError,
    invalid_parameters,
    refusal,
)

log = logging.getLogger("uvicorn.error")

# Predictions worked on at once; one more is answered 503 at once. Each holds at most about
# 160 MiB while its PNG is decoded (a 4096² palette PNG with a transparent colour, measured:
# docs/reliability.md), so 4 stay within 640 MiB; and a prediction takes 20–60 ms of one
# core (measured on a 2-core machine), so 4 at once keep a laptop's cores busy while one of
# them waits on a client.
MAX_BUSY = 4
# A prediction takes 20–60 ms, so a slot is free again well within a second, the shortest
# wait Retry-After can say (whole seconds).
RETRY_AFTER_SECONDS = 1
MAX_SHIFT = 6.0
MAX_ROTATE = 180.0
SCALE_RANGE = (0.5, 2.0)
MAX_NOISE = 1.0
MAX_SAMPLES = 16
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/views.js": ("views.js", "text/javascript; charset=utf-8"),
    "/insides.js": ("insides.js", "text/javascript; charset=utf-8"),
    "/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
    "/i18n.js": ("i18n.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE_MESSAGES = ("page.", "number.", "language.")  # the catalog keys the page uses
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("convnet.serve") / "static"
    return {
        route: ((folder / name).read_bytes(), media_type)
        for route, (name, media_type) in STATIC_FILES.items()
    }


def create_app(
    models: ServedModels,
    samples: ImageDataset | None = None,
    language: str | None = None,
    max_busy: int = MAX_BUSY,
    body_seconds: float = BODY_SECONDS,
) -> FastAPI:
    """The app serving `models`; `samples` (MNIST's test split) backs the sample button;
    `language` (--lang), when given, is the page's language until a visitor picks one.
    `max_busy` predictions are worked on at once, a body must arrive within `body_seconds`."""
    app = FastAPI(
        title="convnet",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        description="Draw a digit and watch a CNN see it.",
    )
    _add_refusals(app, language)
    for route, (content, media_type) in _load_static().items():
        app.add_api_route(
            route, _static_file(content, media_type), methods=["GET"], include_in_schema=False
        )
    _add_api(app, models, samples, language, max_busy, body_seconds)
    return app


def _static_file(content: bytes, media_type: str):
    """The route answering one of the page's files, held in memory."""

    async def serve_file() -> Response:
        return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return serve_file


def _add_refusals(app: FastAPI, language: str | None) -> None:
    """Security headers on every answer, and every failure as a JSON refusal in the request's
    language (convnet.serve.refusals)."""

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(RequestError)
    async def refuse(request: Request, error: RequestError) -> JSONResponse:
        return refusal(request, error, language)

    @app.exception_handler(ClientGone)
    async def gone(request: Request, error: ClientGone) -> Response:
        log.warning("%s", error, extra={"repeat_key": "client gone"})
        return Response(status_code=400)  # to no one: the connection is closed

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return refusal(request, invalid_parameters(error), language)

    # The machine's faults while answering one request (memory, a full disk) fail that
    # request with a JSON error; the server goes on serving the next one.
    @app.exception_handler(MemoryError)
    async def out_of_memory(request: Request, error: MemoryError) -> JSONResponse:
        return refusal(request, RequestError(503, "out_of_memory"), language)

    @app.exception_handler(OSError)
    async def machine_fault(request: Request, error: OSError) -> JSONResponse:
        failed = explain(error)
        if failed is None:
            return refusal(request, RequestError(500, "machine"), language)
        return refusal(request, RequestError(503, "machine_fault", message=failed), language)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        name = HTTP_STATUS_MESSAGES.get(error.status_code)
        told = RequestError(error.status_code, name or "other", message=str(error.detail))
        return refusal(request, told, language)


def _limits(max_busy: int, body_seconds: float) -> dict:
    """The bounds a client must keep, as /api/models tells them."""
    return {
        "body_bytes": MAX_BODY_BYTES,
        "body_seconds": body_seconds,
        "busy": max_busy,
        "image_side": MAX_IMAGE_SIDE,
        "shift": MAX_SHIFT,
        "rotate": MAX_ROTATE,
        "scale": list(SCALE_RANGE),
        "noise": MAX_NOISE,
    }


def _samples(samples: ImageDataset | None, index: int | None, count: int) -> dict:
    """`count` test digits from `index` on (a random start when None), wrapping around."""
    if samples is None:
        raise RequestError(503, "no_samples")
    total = len(samples.labels)
    if index is not None and index >= total:
        raise RequestError(404, "no_sample", index=index, last=total - 1)
    first = random.randrange(total) if index is None else index
    indices = [(first + offset) % total for offset in range(count)]
    return {
        "total": total,
        "samples": [
            {
                "index": i,
                "label": int(samples.labels[i]),
                "name": samples.class_names[int(samples.labels[i])],
                "pixels": samples.images[i].tolist(),
            }
            for i in indices
        ],
    }


def _add_api(
    app: FastAPI,
    models: ServedModels,
    samples: ImageDataset | None,
    language: str | None,
    max_busy: int,
    body_seconds: float,
) -> None:
    """The /api routes (the module's docstring lists them)."""
    # A thread-safe count, taken without waiting: the app may be driven from several event
    # loops (a test client's), and a request beyond it must not queue.
    busy = threading.BoundedSemaphore(max_busy)
    catalogs = {lang: messages(lang, PAGE_MESSAGES) for lang in LANGUAGES}

    def page_language(request: Request, lang: str | None) -> str:
        if lang is None:
            return language or choose_language(request.headers.get("accept-language"))
        if lang not in LANGUAGES:
            raise RequestError(404, "no_language", asked=lang, languages=", ".join(LANGUAGES))
        return lang

    def picked(cnn_augment: bool | None, ordinary_augment: bool | None) -> ServedModels:
        try:
            return models.pick(cnn_augment, ordinary_augment)
        except KeyError:
            raise RequestError(404, "no_network", served=json.dumps(models.choices())) from None

    @app.get("/api/messages")
    async def page_messages(request: Request, lang: str | None = Query(None)) -> dict:
        chosen = page_language(request, lang)
        return {
            "default": chosen,
            "fixed": language is not None,  # --lang was given: it outranks the browser's
            "languages": {code: text(code, LANGUAGE_NAME) for code in LANGUAGES},
            "messages": {code: catalogs[code] for code in LANGUAGES if lang in (None, code)},
        }

    @app.get("/api/models")
    async def list_models(
        request: Request,
        lang: str | None = Query(None),
        cnn_augment: bool | None = Query(None),
        ordinary_augment: bool | None = Query(None),
    ) -> dict:
        chosen = page_language(request, lang)
        pair = picked(cnn_augment, ordinary_augment)
        return {
            "lang": chosen,
            "models": [served.describe(chosen) for served in pair.all()],
            "pair": pair.pairing(chosen),
            "choices": models.choices(),
            "default": {CNN: models.cnn.augment, ORDINARY: models.ordinary.augment},
            "samples": samples is not None,
            "limits": _limits(max_busy, body_seconds),
        }

    @app.get("/api/samples")
    async def sample_digits(
        index: int | None = Query(None, ge=0), count: int = Query(1, ge=1, le=MAX_SAMPLES)
    ) -> dict:
        return _samples(samples, index, count)

    @app.post("/api/predict")
    async def predict(
        request: Request,
        shift_x: float = Query(0.0, ge=-MAX_SHIFT, le=MAX_SHIFT),
        shift_y: float = Query(0.0, ge=-MAX_SHIFT, le=MAX_SHIFT),
        rotate: float = Query(0.0, ge=-MAX_ROTATE, le=MAX_ROTATE),
        scale: float = Query(1.0, ge=SCALE_RANGE[0], le=SCALE_RANGE[1]),
        noise: float = Query(0.0, ge=0.0, le=MAX_NOISE),
        seed: int = Query(0, ge=0, le=2**31 - 1),
        cnn_augment: bool | None = Query(None),
        ordinary_augment: bool | None = Query(None),
    ) -> dict:
        pair = picked(cnn_augment, ordinary_augment)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("image/png", "application/json"):
            raise RequestError(415, "content_type", given=content_type or "none")
        body = await read_body_limited(request, seconds=body_seconds)
        parse = digit_from_png if content_type == "image/png" else digit_from_json
        if not busy.acquire(blocking=False):
            raise RequestError(
                503,
                "busy",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
                busy=max_busy,
                seconds=RETRY_AFTER_SECONDS,
            )
        try:  # a thread runs to its end even when the client leaves: the slot is held till then
            digit = await run_in_threadpool(parse, body)
            view = View(shift_x, shift_y, rotate, scale, noise, seed)
            return await run_in_threadpool(look, pair, digit, view)
        finally:
            busy.release()
