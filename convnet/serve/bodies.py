"""Reading a request's body within its bounds, and the digit in it: a PNG prepared as MNIST
was (`convnet.data.images.load_digit`: 20×20 box, centred by mass), or JSON pixels used as
given. Every refusal is a RequestError whose sentence the catalogs word in the request's
language (convnet.serve.refusals); docs/reliability.md lists every bound with its number.
"""

from __future__ import annotations

import io
import json
import math

import anyio
import torch
from fastapi import Request
from PIL import Image, UnidentifiedImageError
from starlette.requests import ClientDisconnect

from convnet.data.images import load_digit
from convnet.errors import UserError
from convnet.serve.refusals import RequestError

MAX_BODY_BYTES = 1_000_000
# How long a body may take to arrive before the answer is 408: 1 MB (the body limit) in 20 s
# is 400 kbit/s, slower than a poor mobile link; the page sends 3–30 kB.
BODY_SECONDS = 20.0
MAX_IMAGE_SIDE = 4096
DIGIT_SIDE = 28
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ClientGone(Exception):
    """The connection ended before its request body was all sent."""


async def read_body_limited(
    request: Request, limit: int = MAX_BODY_BYTES, seconds: float = BODY_SECONDS
) -> bytes:
    """The request body, refused (413) as soon as its declared or actual size passes `limit`,
    and (408) when it has not all arrived within `seconds`; ClientGone when the client
    leaves before sending it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "content_length")
        if int(declared) > limit:
            raise RequestError(413, "body_declared_too_large", size=int(declared), limit=limit)
    chunks, size = [], 0
    try:
        with anyio.fail_after(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, "body_too_large", limit=limit)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(
            408, "body_too_slow", {"Connection": "close"}, seconds=seconds, size=size
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
        raise RequestError(400, "body_empty")
    if not data.startswith(PNG_SIGNATURE):
        raise RequestError(415, "not_png")
    try:
        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            width, height = header.size
    except Image.DecompressionBombError:  # Pillow's own limit, far past ours
        raise RequestError(413, "image_declares_too_many", side=str(MAX_IMAGE_SIDE)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise RequestError(422, "png_unreadable", detail=error) from None
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        sides = dict(width=str(width), height=str(height), side=str(MAX_IMAGE_SIDE))  # not grouped
        raise RequestError(413, "image_too_large", **sides)
    try:
        return load_digit(data, name="The image")
    except UserError as error:
        raise RequestError.from_user_error(422, error) from None


def digit_from_json(data: bytes) -> torch.Tensor:
    """{"pixels": 28 rows of 28 numbers in 0…255, light ink on black} → uint8 (28, 28)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, "json_invalid", detail=error) from None
    except RecursionError:  # e.g. "[[[[…" a million deep: the parser runs out of stack
        raise RequestError(400, "json_too_deep") from None
    if not isinstance(document, dict) or "pixels" not in document:
        raise RequestError(422, "json_no_pixels")
    rows = document["pixels"]
    if (
        not isinstance(rows, list)
        or len(rows) != DIGIT_SIDE
        or not all(isinstance(row, list) and len(row) == DIGIT_SIDE for row in rows)
    ):
        raise RequestError(422, "pixels_shape", side=str(DIGIT_SIDE))
    values = [value for row in rows for value in row]
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise RequestError(422, "pixels_not_finite")
    if min(values) < 0 or max(values) > 255:
        raise RequestError(422, "pixels_out_of_range", low=min(values), high=max(values))
    return torch.tensor(values, dtype=torch.float64).round().to(torch.uint8).view(28, 28)
