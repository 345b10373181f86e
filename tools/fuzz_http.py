"""A fuzzer of the server's connections (the requests themselves: tools/fuzz_requests.py).

It starts the real server (the app over untrained models, uvicorn with the limits of
`convnet serve`, its deadlines shortened to seconds) on a free 127.0.0.1 port in a thread,
and throws connections at it for a while: idle ones, half-sent and trickled headers, slow
and abandoned bodies, a body trickled to a page that reads none, oversized headers,
garbage, PNGs of huge dimensions, and bursts of predictions. Each must end as its bound
says: closed by its deadline, answered, or refused cleanly (a 4xx with a JSON error,
uvicorn's 400 for a malformed request, a 503 with Retry-After). Meanwhile a probe asks for
/api/models every quarter second and must be answered within 2 s: the server must not be
starved. A traceback in the server's log is a crash too.

    python tools/fuzz_http.py [--seconds 60] [--seed 0]

Counts per kind, the probe's latencies and the server's log lines go to tools/fuzz_http.json;
the script exits 1 on a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import torch
from fuzz_requests import huge_dimensions, untrained_app_models

from convnet.serve.app import MAX_BODY_BYTES, create_app

# --- the server's connections: a real server on 127.0.0.1, raw sockets ---------------------

# The server's deadlines, shortened so that a run of a minute sees each end many times (the
# command's are 20 s for headers, 20 s for a body, 5 s idle): what is fuzzed is that each
# deadline holds, not its length.
HEADER_SECONDS, BODY_SECONDS, KEEP_ALIVE_SECONDS = 2.0, 2.0, 1.0
CONNECTIONS = 64  # the cap, lowered so that idle connections overflow it
SLACK_SECONDS = 3.0  # a deadline met this late still counts (2 shared cores, busy)
PROBE_SECONDS = 2.0  # the most a probe may wait for /api/models while the server is under fire
NETWORK_KINDS = [
    "idle",
    "half-sent headers",
    "trickled headers",
    "slow body",
    "abandoned body",
    "body trickled to the page",
    "oversized headers",
    "garbage",
    "huge dimensions",
    "burst",
]
PREDICT_HEAD = (
    "POST /api/predict HTTP/1.1\r\nHost: fuzz\r\nContent-Type: {type}\r\n"
    "Content-Length: {length}\r\n\r\n"
)


class ServerLog(logging.Handler):
    """The server's log records, kept (the server runs in a thread of this process)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def start_server() -> tuple[object, int, threading.Thread]:
    """The real server (untrained models, shortened deadlines) in a thread; (server, port)."""
    from convnet.commands.serve import open_socket
    from convnet.serve.server import Limits, make_server

    app = create_app(untrained_app_models(), body_seconds=BODY_SECONDS)
    limits = Limits(
        header_seconds=HEADER_SECONDS,
        body_cutoff_seconds=BODY_SECONDS + 1,
        keep_alive_seconds=KEEP_ALIVE_SECONDS,
        connections=CONNECTIONS,
    )
    server = make_server(app, limits)
    listener = open_socket("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, listener.getsockname()[1], thread


async def until_closed(reader: asyncio.StreamReader, seconds: float) -> tuple[bytes, float | None]:
    """What the server sends until it closes the connection, and after how many seconds
    (None: still open after `seconds`)."""
    started, received = time.monotonic(), b""
    try:
        while True:
            left = seconds - (time.monotonic() - started)
            chunk = await asyncio.wait_for(reader.read(65536), max(left, 0.001))
            if not chunk:
                return received, time.monotonic() - started
            received += chunk
    except (ConnectionError, OSError):
        return received, time.monotonic() - started
    except asyncio.TimeoutError:
        return received, None


def parse_answer(data: bytes) -> tuple[int | None, dict, bytes]:
    """(status, lower-case headers, body) of the first HTTP answer in `data`."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, {}, b""
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return status, headers, body[: int(headers.get("content-length", len(body)))]


def json_error(status: int | None, headers: dict, body: bytes) -> bool:
    """A refusal as the app words it: a 4xx, or a 503 with Retry-After, with a JSON error."""
    busy = status == 503 and "retry-after" in headers
    if status is None or not (400 <= status < 500 or busy):
        return False
    try:
        return isinstance(json.loads(body).get("error"), str)
    except (ValueError, AttributeError):
        return False


def digit_body(rng: random.Random) -> bytes:
    pixels = [[0] * 28 for _ in range(28)]
    column = rng.randrange(8, 20)
    for row in range(5, 23):
        pixels[row][column] = pixels[row][column + 1] = 255
    return json.dumps({"pixels": pixels}).encode()


async def predict_once(port: int, body: bytes, content_type: str) -> tuple[int | None, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = PREDICT_HEAD.format(type=content_type, length=len(body)).encode()
        writer.write(head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + body)
        await writer.drain()
        data, _ = await until_closed(reader, 120)
        return parse_answer(data)
    finally:
        writer.close()


async def attack(kind: str, port: int, rng: random.Random) -> list[str]:
    """One connection (or a burst of them) of `kind`; the outcome of each: "closed" (by its
    deadline), "answered", "refused" (cleanly), "abandoned", "shed" (a burst's connection
    closed unanswered: the server at its cap of connections made room), or "crash: …"."""
    if kind in ("burst", "huge dimensions"):
        count = rng.randint(8, 40) if kind == "burst" else 1
        answers = await asyncio.gather(
            *(
                predict_once(port, digit_body(rng), "application/json")
                if kind == "burst"
                else predict_once(port, huge_dimensions(rng), "image/png")
                for _ in range(count)
            )
        )
        return [
            "answered"
            if status == 200
            else "refused"
            if json_error(status, headers, body)
            else "shed"
            if status is None
            else f"crash: {kind} answered {status}"
            for status, headers, body in answers
        ]
    deadline = {"slow body": BODY_SECONDS, "body trickled to the page": BODY_SECONDS + 1}.get(
        kind, HEADER_SECONDS
    )
    limit = deadline + SLACK_SECONDS
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except (ConnectionError, OSError):
        return ["closed"]
    started = time.monotonic()
    closing = asyncio.create_task(until_closed(reader, limit))  # read all the while

    async def trickle() -> None:  # a byte every 0.2 s until the server closes
        while not closing.done() and time.monotonic() - started < limit:
            writer.write(b"x")
            await asyncio.sleep(0.2)

    try:
        if kind == "half-sent headers":
            writer.write(b"POST /api/predict HTTP/1.1\r\nHost: fuzz\r\nContent-Le")
        elif kind == "trickled headers":
            writer.write(b"GET / HTTP/1.1\r\nHost: fuzz\r\nX-Slow: ")
            await trickle()
        elif kind in ("slow body", "abandoned body"):
            length = rng.choice([100, 5000, MAX_BODY_BYTES])
            writer.write(PREDICT_HEAD.format(type="image/png", length=length).encode())
            writer.write(b"\x89PNG\r\n\x1a\n"[: rng.randint(0, 8)])
            if kind == "abandoned body":
                await writer.drain()
                await asyncio.sleep(rng.uniform(0, 0.3))
                closing.cancel()
                return ["abandoned"]
        elif kind == "body trickled to the page":
            writer.write(b"GET / HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 100000\r\n\r\n")
            await trickle()
        elif kind == "oversized headers":
            big = b"a" * rng.randint(17_000, 60_000)
            writer.write(b"GET / HTTP/1.1\r\nHost: fuzz\r\nX-Big: " + big)
        elif kind == "garbage":
            writer.write(rng.randbytes(rng.randint(1, 3000)))
        await writer.drain()
    except (ConnectionError, OSError):
        pass  # closed under it: what the server said is read below
    try:
        data, after = await closing
    finally:
        writer.close()
    if after is None:
        return [f"crash: {kind} still open after {limit:.0f} s"]
    status, headers, body = parse_answer(data)
    if kind == "slow body" and not (status == 408 and json_error(status, headers, body)):
        return ["shed" if status is None else f"crash: slow body answered {status}"]
    if kind in ("oversized headers", "garbage") and status not in (None, 400):
        return [f"crash: {kind} answered {status}"]
    return ["refused" if kind == "slow body" else "closed"]


async def probe(port: int, stop: asyncio.Event, latencies: list[float], failures: list[str]):
    """GET /api/models every quarter second: each must be answered within PROBE_SECONDS."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), PROBE_SECONDS
            )
            writer.write(b"GET /api/models HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            data, _ = await until_closed(reader, PROBE_SECONDS)
            writer.close()
            status = parse_answer(data)[0]
            if status != 200:
                failures.append(f"probe answered {status}")
        except (asyncio.TimeoutError, ConnectionError, OSError) as error:
            failures.append(f"probe failed: {type(error).__name__}")
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.25)


async def fuzz_network(seconds: float, seed: int, port: int, server) -> dict:
    rng = random.Random(seed)
    outcomes: dict[str, Counter] = {kind: Counter() for kind in NETWORK_KINDS}
    crashes: list[str] = []
    latencies: list[float] = []
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(port, stop, latencies, crashes))
    running: set[asyncio.Task] = set()
    most_open = 0
    started = time.monotonic()

    def count(kind: str, results: list[str]) -> None:
        for outcome in results:
            outcomes[kind][outcome.split(":")[0]] += 1
            if outcome.startswith("crash") and len(crashes) < 20:
                crashes.append(outcome)

    while time.monotonic() - started < seconds:
        if len(running) < 150:  # connections in flight: past the cap of CONNECTIONS
            kind = rng.choices(NETWORK_KINDS, weights=[30, 10, 10, 10, 10, 5, 5, 10, 3, 2])[0]
            task = asyncio.create_task(attack(kind, port, random.Random(rng.random())))
            task.kind = kind  # type: ignore[attr-defined]
            running.add(task)
        done = {task for task in running if task.done()}
        for task in done:
            count(task.kind, task.result())
        running -= done
        most_open = max(most_open, len(server.server_state.connections))
        await asyncio.sleep(rng.uniform(0, 0.02))
    for task in running:
        count(task.kind, await task)
    stop.set()
    await probing
    return {
        "outcomes": {kind: dict(counter) for kind, counter in outcomes.items()},
        "connections": sum(sum(counter.values()) for counter in outcomes.values()),
        "most_open_at_once": most_open,  # as uvicorn counts them: those closing included
        "probe": {
            "count": len(latencies),
            "p50_seconds": round(statistics.median(latencies), 3) if latencies else None,
            "max_seconds": round(max(latencies), 3) if latencies else None,
        },
        "crashes": crashes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Throw hostile connections at the real server.")
    parser.add_argument("--seconds", type=float, default=60, help="how long to attack")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import resource  # Unix: the fuzzer is for the machines the server runs on

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from common import save_results  # stamps commit, command line, machine, load

    torch.set_num_threads(1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):  # clients and server share the descriptors
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    server, port, thread = start_server()
    log = ServerLog()  # after the server configured its logging, which resets handlers
    logging.getLogger("uvicorn.error").addHandler(log)
    began = time.monotonic()
    result = asyncio.run(fuzz_network(args.seconds, args.seed, port, server))
    server.should_exit = True
    thread.join(timeout=30)
    lines = [record.getMessage() for record in log.records]
    tracebacks = [line for line, r in zip(lines, log.records, strict=True) if r.exc_info]
    result["crashes"] += [f"traceback in the log: {line}" for line in tracebacks[:5]]
    result = {
        "seed": args.seed,
        "seconds": round(time.monotonic() - began, 1),
        "deadlines": {
            "header_seconds": HEADER_SECONDS,
            "body_seconds": BODY_SECONDS,
            "keep_alive_seconds": KEEP_ALIVE_SECONDS,
            "connections": CONNECTIONS,
        },
        **result,
        "log_lines": len(lines),
        "log": lines[:20],
        "peak_resident_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    path = save_results(__file__, result)
    print(f"{result['connections']:,} connections in {result['seconds']} s (seed {args.seed})")
    for kind, counts in result["outcomes"].items():
        print(f"  {kind:<28}" + ", ".join(f"{n:,} {outcome}" for outcome, n in counts.items()))
    probe_line = result["probe"]
    print(
        f"probe: {probe_line['count']} asked, p50 {probe_line['p50_seconds']} s, "
        f"at most {probe_line['max_seconds']} s; at most {result['most_open_at_once']} "
        f"connections open at once; {result['log_lines']} log lines"
    )
    for crash in result["crashes"][:10]:
        print(f"crash: {crash}", file=sys.stderr)
    print(f"saved {path.name}")
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
