"""The web half of tools/fuzz.py: generated requests to POST /api/predict (among them PNGs
of a few kB that declare up to 20,000 pixels a side), handed to the app in-process as a
server would hand them over ASGI (no network, no server), and the judgement of each answer:
a 200 with both networks' predictions, a 4xx with a JSON {"error": …}, a 503 with
Retry-After (busy), or a crash (anything else). tools/fuzz_http.py throws some of them at a
real server too.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import zlib
from collections.abc import Callable
from functools import cache

import torch

from convnet.engine.run import LoadedModel
from convnet.models import get_model, get_model_spec
from convnet.serve.app import MAX_BODY_BYTES, MAX_IMAGE_SIDE, create_app
from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels

LENGTHS = [0, 1, 8, 255, 4096, 65_535, MAX_BODY_BYTES, MAX_BODY_BYTES + 1, 2**31, 2**32 - 1, 10**30]

CONTENT_TYPES = [
    "image/png",
    "application/json",
    "IMAGE/PNG",
    "image/png; charset=binary",
    "application/json; charset=utf-8",
    "text/plain",
    "image/jpeg",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "image/png, application/json",
    ";",
    "\u00e9/\u00e9",
    None,
]
PARAMETERS = ["shift_x", "shift_y", "rotate", "scale", "noise", "seed", "other"]
PARAMETER_VALUES = [
    "0",
    "1",
    "-6",
    "6",
    "6.0001",
    "-1e309",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "2.5",
    "0.5",
    "180",
    "-181",
    "99999999999999999999999",
    "-1",
    "2147483647",
    "2147483648",
    "",
    "abc",
    "%ff%fe",
    "%00",
    "1%2e5",
    "0x10",
    "１",
]


def json_body(rng: random.Random, kind: int | None = None) -> bytes:
    kind = rng.randrange(7) if kind is None else kind
    if kind == 0:  # valid pixels
        return json.dumps(
            {"pixels": [[rng.randint(0, 255) for _ in range(28)] for _ in range(28)]}
        ).encode()
    if kind == 1:  # the right shape with odd values
        odd = [0, 255, -1, 256, 1.5, 1e308, "7", None, True, [], {}]
        return json.dumps(
            {"pixels": [[rng.choice(odd) for _ in range(28)] for _ in range(28)]}
        ).encode()
    if kind == 2:  # the wrong shape
        rows, columns = rng.choice([0, 1, 27, 28, 29, 1000]), rng.choice([0, 27, 28, 29])
        return json.dumps({"pixels": [[0] * columns] * rows}).encode()
    if kind == 3:  # NaN, Infinity and other literals Python's json reads
        return (
            b'{"pixels": ['
            + b",".join(
                [
                    b"["
                    + b",".join(
                        [rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"0"])] * 28
                    )
                    + b"]"
                ]
                * 28
            )
            + b"]}"
        )
    if kind == 4:  # nested deeply (a parser's stack), as deep as the body limit allows
        depth = rng.choice([10, 1000, 100_000, MAX_BODY_BYTES // 2 - 20])
        return b'{"pixels": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 5:  # other documents and encodings
        return rng.choice(
            [
                b"null",
                b"[]",
                b"{}",
                b'"pixels"',
                b'{"pixels": "x"}',
                json.dumps({"pixels": None}).encode(),
                '{"pixels": "\u00e9"}'.encode("utf-16"),
                b'{"pixels": [' + b"0," * 50_000 + b"0]}",
                b"\xef\xbb\xbf{}",
            ]
        )
    return rng.randbytes(rng.randint(0, 200))


@cache
def huge_png(width: int, height: int, ink: bool) -> bytes:
    """A greyscale PNG of width×height pixels in a few kB: black rows compress to almost
    nothing (a 4096² one is 16 kB); with `ink`, a band of white across its middle. Built
    row by row, so the fuzzer never holds the pixels; beyond the server's side limit only
    the header and a stub of data, as a bomb would be."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if max(width, height) > MAX_IMAGE_SIDE:
        data = zlib.compress(bytes(1 + min(width, 64)))
    else:
        packer = zlib.compressobj(9)
        black = bytes(1 + width)
        white = b"\0" + b"\xff" * width
        band = range(height * 2 // 5, height * 3 // 5) if ink else range(0)
        data = b"".join(packer.compress(white if row in band else black) for row in range(height))
        data += packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


HUGE_SIZES = [
    (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE),
    (MAX_IMAGE_SIDE, 1),
    (1, MAX_IMAGE_SIDE),
    (MAX_IMAGE_SIDE, 3),
    (2048, MAX_IMAGE_SIDE),
    (MAX_IMAGE_SIDE + 1, MAX_IMAGE_SIDE + 1),
    (20_000, 20_000),
    (2**31 - 1, 1),
]


def huge_dimensions(rng: random.Random) -> bytes:
    width, height = rng.choice(HUGE_SIZES)
    return huge_png(width, height, rng.random() < 0.5)


VALID_PARAMETERS = {
    "shift_x": ["-6", "0", "2.5", "6"],
    "shift_y": ["-3", "6"],
    "rotate": ["-180", "15", "180"],
    "scale": ["0.5", "1.25", "2"],
    "noise": ["0", "0.3", "1"],
    "seed": ["0", "7", "2147483647"],
}


def predict_request(
    rng: random.Random, image: Callable[[], bytes], valid_png: Callable[[], bytes]
) -> tuple[str, list, bytes, list[bytes]]:
    """(family, headers, query string, body chunks) of one generated request: a third are
    well-formed (right Content-Type and length, parameters in range), the rest hostile."""
    if rng.random() < 0.35:
        kind = rng.choice(["png", "json"])
        body = valid_png() if kind == "png" else json_body(rng, kind=0)
        content_type = "image/png" if kind == "png" else "application/json"
        headers = [(b"content-type", content_type.encode())]
        if rng.random() < 0.8:
            headers.append((b"content-length", str(len(body)).encode()))
        names = rng.sample(sorted(VALID_PARAMETERS), rng.randint(0, 3))
        query = "&".join(f"{name}={rng.choice(VALID_PARAMETERS[name])}" for name in names).encode()
        return f"well-formed {kind}", headers, query, [body]
    family = rng.choices(
        ["png", "json", "random", "oversized", "huge dimensions"], weights=[45, 40, 13, 2, 1]
    )[0]
    if family == "png":
        body = image()
    elif family == "huge dimensions":
        body = huge_dimensions(rng)
    elif family == "json":
        body = json_body(rng)
    elif family == "random":
        body = rng.randbytes(rng.randint(0, 2000))
    else:
        body = b"\x89PNG\r\n\x1a\n" + bytes(MAX_BODY_BYTES + rng.randint(-8, 100_000))
    content_type = rng.choice(CONTENT_TYPES)
    if family == "huge dimensions" and rng.random() < 0.8:
        content_type = "image/png"  # mostly reaching the decoder
    if content_type is None and family in ("png", "json"):
        content_type = "image/png" if family == "png" else "application/json"
    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("utf-8")))
    length = rng.choices(["right", "absent", "wrong", "junk"], weights=[60, 20, 10, 10])[0]
    if length == "right":
        headers.append((b"content-length", str(len(body)).encode()))
    elif length == "wrong":
        headers.append((b"content-length", str(rng.choice(LENGTHS)).encode()))
    elif length == "junk":
        headers.append(
            (b"content-length", rng.choice([b"-1", b"1e3", b" 5", b"0x10", b"", b"\xff"]))
        )
    for _ in range(rng.choice([0, 0, 1, 3])):  # odd extra headers
        headers.append(
            (
                rng.choice([b"x-a", b"transfer-encoding", b"content-type", b"host", b"\xff"]),
                rng.randbytes(rng.randint(0, 20)),
            )
        )
    pairs = []
    for _ in range(rng.choice([0, 0, 1, 2, 4])):
        name, value = rng.choice(PARAMETERS), rng.choice(PARAMETER_VALUES)
        pairs.append(f"{name}={value}" if rng.random() < 0.95 else name)
    query = "&".join(pairs).encode("utf-8")
    chunks, rest = [], body
    while rest and len(chunks) < 20 and rng.random() < 0.3:  # a body in pieces, some empty
        cut = rng.randint(0, len(rest))
        chunks.append(rest[:cut])
        rest = rest[cut:]
    return family, headers, query, [*chunks, rest]


async def call_app(
    app, headers: list, query: bytes, chunks: list[bytes]
) -> tuple[int, bytes, dict]:
    """One POST /api/predict as a server would hand it to the app; (status, body, headers)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    pending = list(chunks)
    response: dict = {"status": None, "body": b"", "headers": {}}

    async def receive() -> dict:
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending)}
        await asyncio.Event().wait()  # the client stays connected until the app is done
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            response["status"] = message["status"]
            response["headers"] = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in message.get("headers", [])
            }
        elif message["type"] == "http.response.body":
            response["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return response["status"], response["body"], response["headers"]


def judge_reply(status: int | None, body: bytes, headers: dict | None = None) -> str:
    """ "accepted" (a 200 with both predictions), "rejected" (a 4xx with a JSON error, or a
    503 with Retry-After: busy), else AssertionError. `headers` (lower-case names), where
    known, must hold Retry-After on a 503."""
    busy = status == 503 and (headers is None or "retry-after" in headers)
    if status is None or (status >= 500 and not busy):
        raise AssertionError(f"status {status}: {body[:200]!r}")
    document = json.loads(body)
    if status == 200:
        assert len(document["predictions"]) == 2 and len(document["pixels"]) == 28
        return "accepted"
    assert (400 <= status < 500 or busy) and isinstance(document.get("error"), str), (
        status,
        body[:200],
    )
    return "rejected"


def untrained_app_models() -> ServedModels:
    """Untrained LeNet-5 (the CNN) and MLP (the ordinary network), as the page serves them."""
    torch.manual_seed(0)
    served = []
    for role, name in ((CNN, "lenet5"), (ORDINARY, "mlp")):
        loaded = LoadedModel(
            name,
            get_model_spec(name),
            get_model(name, num_classes=10).eval(),
            tuple(str(i) for i in range(10)),
        )
        served.append(ServedModel(role, loaded, "untrained, for fuzzing"))
    return ServedModels(*served)


def untrained_app():
    """The real app over untrained LeNet-5 and MLP (how it answers does not depend on training)."""
    return create_app(untrained_app_models())
