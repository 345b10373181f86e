"""The web app: a page that draws digits and an API that shows what the networks see.

GET  /                 the page (index.html, app.js, views.js, i18n.js, style.css, in memory)
GET  /api/messages     the page's texts in every language (?lang=ko: in one), the language
                       names for the switch, and the default: --lang, else Accept-Language
GET  /api/models       both networks: name, parameters, test error, how the run was chosen
                       (given / best of N runs / trained now), whether it is undertrained,
                       its recipe, and two sentences about it in ?lang (default as for
                       /api/messages); whether the pair differs in architecture only
                       (`pair.matched`, its differences) and which networks the
                       ?cnn_augment=&ordinary_augment= switches can pick (`choices`)
GET  /api/samples      MNIST test digits (?index=N, or a random one; ?count=K ≤ 16)
POST /api/predict      a PNG (drawn or uploaded) or JSON {"pixels": 28×28 of 0…255}, with
                       ?shift_x&shift_y (px, ±6) &rotate (degrees) &scale &noise &seed
                       &cnn_augment&ordinary_augment (which pair answers)
                       → both networks' probabilities, the CNN's feature maps C1…C5 and
                       its C1 filters, the 28×28 pixels the networks saw, and where each
                       looked (Grad-CAM on C3, input saliency: 28×28 maps, centre of mass).

A PNG is prepared as MNIST was (`convnet.data.images.load_digit`: 20×20 box, centred by
mass); JSON pixels are used as given, so a client can move them itself. Requests are
refused with a 4xx JSON {"error": …} when the body passes 1 MB (checked while reading,
never after) or has not all arrived within BODY_SECONDS (408), the image passes 4096 px a
side (checked from its header, before decoding) or anything else is wrong. At most
MAX_BUSY predictions are worked on at once; one more is answered 503 with Retry-After at
once, not queued. A client that goes away mid-body is one log line. No part of a request
names a file: the page's files are read once from the package when the app is made. Every
text the page shows comes from the message catalogs (convnet/locales), which it receives
from /api/messages. docs/reliability.md lists every bound with its number.
"""

from __future__ import annotations

import io
import json
import logging
import math
import random
import threading
from importlib import resources

import anyio
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from convnet.data.datasets import ImageDataset
from convnet.data.images import load_digit
from convnet.errors import UserError
from convnet.files import explain
from convnet.i18n import LANGUAGE_NAME, LANGUAGES, choose_language, messages, text
from convnet.serve.inference import View, look
from convnet.serve.models import CNN, ORDINARY, ServedModels

log = logging.getLogger("uvicorn.error")

MAX_BODY_BYTES = 1_000_000
# How long a body may take to arrive before the answer is 408: 1 MB (the body limit) in 20 s
# is 400 kbit/s, slower than a poor mobile link; the page sends 3–30 kB.
BODY_SECONDS = 20.0
MAX_IMAGE_SIDE = 4096
# Predictions worked on at once; one more is answered 503 at once. Each holds at most about
# 160 MiB while its PNG is decoded (a 4096² palette PNG with a transparent colour, measured:
# docs/reliability.md), so 4 stay within 640 MiB; and a prediction takes 20–60 ms of one
# core (measured on a 2-core machine), so 4 at once keep a laptop's cores busy while one of
# them waits on a client.
MAX_BUSY = 4
# A prediction takes 20–60 ms, so a slot is free again well within a second, the shortest
# wait Retry-After can say (whole seconds).
RETRY_AFTER_SECONDS = 1
DIGIT_SIDE = 28
MAX_SHIFT = 6.0
MAX_ROTATE = 180.0
SCALE_RANGE = (0.5, 2.0)
MAX_NOISE = 1.0
MAX_SAMPLES = 16
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/views.js": ("views.js", "text/javascript; charset=utf-8"),
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


class RequestError(Exception):
    """A request the server refuses: an HTTP status, a sentence for the user, and headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class ClientGone(Exception):
    """The connection ended before its request body was all sent."""


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body_limited(
    request: Request, limit: int = MAX_BODY_BYTES, seconds: float = BODY_SECONDS
) -> bytes:
    """The request body, refused (413) as soon as its declared or actual size passes `limit`,
    and (408) when it has not all arrived within `seconds`; ClientGone when the client
    leaves before sending it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "The Content-Length header is not a number.")
        if int(declared) > limit:
            raise RequestError(
                413, f"The request body has {int(declared):,} bytes; the limit is {limit:,}."
            )
    chunks, size = [], 0
    try:
        with anyio.fail_after(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(
                        413, f"The request body passes the limit of {limit:,} bytes."
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(
            408,
            f"The request body did not arrive within {seconds:g} s ({size:,} bytes came); "
            "send it again on a faster connection.",
            {"Connection": "close"},
        ) from None
    except ClientDisconnect:
        client = request.client
        where = f"{client.host}:{client.port}" if client else "A client"
        expected = f" of {int(declared):,}" if declared is not None else ""
        raise ClientGone(
            f"{where}: the connection ended after {size:,}{expected} bytes of its "
            f"{request.method} {request.url.path} body (the client left, or a deadline "
            "or the connection cap closed it); nothing was answered."
        ) from None
    return b"".join(chunks)


def digit_from_png(data: bytes) -> torch.Tensor:
    """A PNG's digit, MNIST-style; its size is checked from the header before decoding."""
    if not data:
        raise RequestError(400, "The request body is empty; send a PNG image or JSON pixels.")
    if not data.startswith(PNG_SIGNATURE):
        raise RequestError(415, "The body is not a PNG image (it lacks the PNG signature).")
    try:
        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            width, height = header.size
    except Image.DecompressionBombError:  # Pillow's own limit, far past ours
        raise RequestError(
            413, f"The image declares far more pixels than {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE}."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise RequestError(422, f"The PNG image cannot be read ({error}).") from None
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise RequestError(
            413,
            f"The image is {width}×{height} pixels; the limit is "
            f"{MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE}.",
        )
    try:
        return load_digit(data, name="The image")
    except UserError as error:
        raise RequestError(422, str(error)) from None


def digit_from_json(data: bytes) -> torch.Tensor:
    """{"pixels": 28 rows of 28 numbers in 0…255, light ink on black} → uint8 (28, 28)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"The body is not valid JSON ({error}).") from None
    except RecursionError:  # e.g. "[[[[…" a million deep: the parser runs out of stack
        raise RequestError(400, "The JSON body is nested too deeply.") from None
    if not isinstance(document, dict) or "pixels" not in document:
        raise RequestError(422, 'The JSON body must be an object with a "pixels" array.')
    rows = document["pixels"]
    if (
        not isinstance(rows, list)
        or len(rows) != DIGIT_SIDE
        or not all(isinstance(row, list) and len(row) == DIGIT_SIDE for row in rows)
    ):
        raise RequestError(
            422, f'"pixels" must be {DIGIT_SIDE} rows of {DIGIT_SIDE} numbers (0…255).'
        )
    values = [value for row in rows for value in row]
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise RequestError(422, '"pixels" must hold only finite numbers (0…255).')
    if min(values) < 0 or max(values) > 255:
        raise RequestError(422, f'"pixels" must lie in 0…255; found {min(values)}…{max(values)}.')
    return torch.tensor(values, dtype=torch.float64).round().to(torch.uint8).view(28, 28)


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
    static = _load_static()
    # A thread-safe count, taken without waiting: the app may be driven from several event
    # loops (a test client's), and a request beyond it must not queue.
    busy = threading.BoundedSemaphore(max_busy)
    catalogs = {lang: messages(lang, PAGE_MESSAGES) for lang in LANGUAGES}

    def page_language(request: Request, lang: str | None) -> str:
        if lang is None:
            return language or choose_language(request.headers.get("accept-language"))
        if lang not in LANGUAGES:
            raise RequestError(
                404,
                f"There are no messages in '{lang}'; the languages are {', '.join(LANGUAGES)}.",
            )
        return lang

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(RequestError)
    async def refuse(request: Request, error: RequestError) -> JSONResponse:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(ClientGone)
    async def gone(request: Request, error: ClientGone) -> Response:
        log.warning("%s", error, extra={"repeat_key": "client gone"})
        return Response(status_code=400)  # to no one: the connection is closed

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'][1:]) or 'request'}: {item['msg']}"
            for item in error.errors()
        )
        return error_response(422, f"Invalid request parameters: {problems}.")

    # The machine's faults while answering one request (memory, a full disk) fail that
    # request with a JSON error; the server goes on serving the next one.
    @app.exception_handler(MemoryError)
    async def out_of_memory(request: Request, error: MemoryError) -> JSONResponse:
        return error_response(
            503,
            "The server ran out of memory for this request; try a "
            "smaller image, or again in a moment.",
        )

    @app.exception_handler(OSError)
    async def machine_fault(request: Request, error: OSError) -> JSONResponse:
        failed = explain(error)
        return error_response(
            503 if failed else 500,
            str(
                failed or "The server could not complete this request (an operating-system error)."
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail))

    def static_route(route: str):
        content, media_type = static[route]

        async def serve_file() -> Response:
            return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})

        return serve_file

    for route in STATIC_FILES:
        app.add_api_route(route, static_route(route), methods=["GET"], include_in_schema=False)

    @app.get("/api/messages")
    async def page_messages(request: Request, lang: str | None = Query(None)) -> dict:
        chosen = page_language(request, lang)
        return {
            "default": chosen,
            "fixed": language is not None,  # --lang was given: it outranks the browser's
            "languages": {code: text(code, LANGUAGE_NAME) for code in LANGUAGES},
            "messages": {code: catalogs[code] for code in LANGUAGES if lang in (None, code)},
        }

    def picked(cnn_augment: bool | None, ordinary_augment: bool | None) -> ServedModels:
        try:
            return models.pick(cnn_augment, ordinary_augment)
        except KeyError:
            raise RequestError(
                404,
                "This server has no such network: it serves, trained with (true) or without "
                f"(false) augmentation, {json.dumps(models.choices())}.",
            ) from None

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
            "limits": {
                "body_bytes": MAX_BODY_BYTES,
                "body_seconds": body_seconds,
                "busy": max_busy,
                "image_side": MAX_IMAGE_SIDE,
                "shift": MAX_SHIFT,
                "rotate": MAX_ROTATE,
                "scale": list(SCALE_RANGE),
                "noise": MAX_NOISE,
            },
        }

    @app.get("/api/samples")
    async def sample_digits(
        index: int | None = Query(None, ge=0), count: int = Query(1, ge=1, le=MAX_SAMPLES)
    ) -> dict:
        if samples is None:
            raise RequestError(503, "MNIST's test set is not available on this server.")
        total = len(samples.labels)
        if index is not None and index >= total:
            raise RequestError(404, f"There is no sample {index}; indices go 0…{total - 1}.")
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
            raise RequestError(
                415,
                f"Send Content-Type image/png or application/json, not '{content_type or 'none'}'.",
            )
        body = await read_body_limited(request, seconds=body_seconds)
        parse = digit_from_png if content_type == "image/png" else digit_from_json
        if not busy.acquire(blocking=False):
            raise RequestError(
                503,
                f"The server is working on {max_busy} other readings; "
                f"try again in {RETRY_AFTER_SECONDS} s.",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        try:  # a thread runs to its end even when the client leaves: the slot is held till then
            digit = await run_in_threadpool(parse, body)
            view = View(shift_x, shift_y, rotate, scale, noise, seed)
            return await run_in_threadpool(look, pair, digit, view)
        finally:
            busy.release()

    return app
