"""The web server under load: 200 concurrent clients POST /api/predict for 30 s.

Trains two small runs (lenet5 and mlp, one epoch on 2,000 MNIST images), starts
`convnet serve` over them on 127.0.0.1 (a free port: loopback only), warms it up with the
same load, then lets every client send one request after another — JSON pixels of real
MNIST test digits, and PNG drawings — until the time is up or the request cap is reached.
Reports requests/s, p50/p99 latency, errors, and the server's resident memory after
warm-up, at its peak and at the end (memory must not grow past warm-up). Every answer is
checked, not a sample: it must be a 200 whose pixels and both networks' names, top classes
and probabilities are those of the answer to the same body asked alone before the load.

    python benchmarks/serve_load.py [--clients 200] [--seconds 30] [--warmup 10]
                                    [--max-requests 200000]

Results and the machine's facts (with its load average: clients and server share the
CPU, so a busy machine lowers every figure) go to benchmarks/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402
from common import hardware, hardware_line, judge, save_results  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from convnet.data.datasets import fetch_dataset, load_dataset  # noqa: E402
from convnet.engine.run import newest_run  # noqa: E402
from convnet.serve.models import train_quickly  # noqa: E402

HOST = "127.0.0.1"  # loopback only: the load never leaves this machine
GROWTH_TOLERANCE = 0.05  # "no growth": end RSS within 5% of the RSS after warm-up
SERVER_START_SECONDS = 180


def resident_mib(pid: int) -> float | None:
    """The resident set size of a process, from /proc (Linux); None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def payloads(count: int = 64) -> list[tuple[bytes, str]]:
    """Request bodies: MNIST test digits as JSON pixels, and PNG drawings of strokes."""
    test = load_dataset("mnist", "test")
    rng = random.Random(0)
    bodies = []
    for index in range(count):
        if index % 4 == 3:
            image = Image.new("L", (280, 280), 0)
            points = [(rng.randrange(40, 240), rng.randrange(40, 240)) for _ in range(4)]
            ImageDraw.Draw(image).line(points, fill=255, width=22, joint="curve")
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            bodies.append((buffer.getvalue(), "image/png"))
        else:
            pixels = test.images[rng.randrange(len(test.labels))].tolist()
            bodies.append((json.dumps({"pixels": pixels}).encode(), "application/json"))
    return bodies


def start_server(runs: list[Path], runs_root: Path) -> tuple[subprocess.Popen, str, list[str]]:
    """`convnet serve` on a free loopback port; its process, base URL and log lines."""
    command = [
        sys.executable,
        "-m",
        "convnet",
        "serve",
        "--host",
        HOST,
        "--port",
        "0",
        "--runs-dir",
        str(runs_root),
        "--run",
        *map(str, runs),
    ]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    found = threading.Event()
    address: list[str] = []

    def read_log() -> None:  # drain the log for as long as the server runs
        for line in server.stderr:
            lines.append(line.rstrip())
            match = re.search(r"http://(127\.0\.0\.1:\d+)/", line)
            if match and not found.is_set():
                address.append(match[1])
                found.set()

    threading.Thread(target=read_log, daemon=True).start()
    if not found.wait(SERVER_START_SECONDS):
        server.kill()
        raise SystemExit("The server did not start:\n" + "\n".join(lines[-20:]))
    return server, f"http://{address[0]}", lines


def answer_problem(answer: dict, reference: dict) -> str | None:
    """Why an answer under load differs from the one to the same body asked alone (or None).

    Probabilities may differ in the last printed digit (1e-4), nothing else may.
    """
    if answer.get("pixels") != reference["pixels"]:
        return "pixels differ from the reference answer"
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != 2:
        return "answer without two predictions"
    for got, expected in zip(predictions, reference["predictions"], strict=True):
        if (got.get("name"), got.get("role")) != (expected["name"], expected["role"]):
            return "predictions from other models than the reference answer"
        if got["top"][0]["index"] != expected["top"][0]["index"]:
            return "top class differs from the reference answer"
        difference = max(
            abs(a - b) for a, b in zip(got["probabilities"], expected["probabilities"], strict=True)
        )
        if difference > 1e-4:
            return "probabilities differ from the reference answer"
    return None


def reference_answers(base_url: str, bodies: list[tuple[bytes, str]]) -> list[dict]:
    """The answer to each body asked alone, one request at a time, before any load."""
    answers = []
    with httpx.Client(base_url=base_url, timeout=120.0) as http:
        for body, content_type in bodies:
            reply = http.post("/api/predict", content=body, headers={"Content-Type": content_type})
            reply.raise_for_status()
            answers.append(reply.json())
    return answers


async def load(
    base_url: str,
    bodies: list[tuple[bytes, str]],
    references: list[dict],
    clients: int,
    seconds: float,
    max_requests: int,
    server_pid: int,
) -> dict:
    """`clients` clients sending requests back to back for `seconds` (or `max_requests`)."""
    latencies: list[float] = []
    errors: Counter = Counter()
    examples: list[str] = []
    sent = 0
    memory: list[tuple[float, float]] = []
    deadline = time.perf_counter() + seconds
    # Idle connections are dropped after 2 s, before the server's 5 s keep-alive timeout: a
    # request sent on a connection the server is closing at that instant fails (ReadError), a
    # race every HTTP client must avoid (browsers retry), more likely while the CPU is busy.
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0
    )

    async def client(number: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        index = number
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            reference = references[index % len(bodies)]
            body, content_type = bodies[index % len(bodies)]
            index += clients
            started = time.perf_counter()
            try:
                reply = await http.post(
                    "/api/predict", content=body, headers={"Content-Type": content_type}
                )
                elapsed = time.perf_counter() - started
                if reply.status_code != 200:
                    errors[f"status {reply.status_code}"] += 1
                    continue
                problem = answer_problem(reply.json(), reference)  # every answer, not a sample
                if problem is not None:
                    errors[problem] += 1
                    continue
                latencies.append(elapsed)
            except (httpx.HTTPError, ValueError, KeyError) as error:
                errors[type(error).__name__] += 1
                if len(examples) < 5:
                    at = time.perf_counter() - (deadline - seconds)
                    examples.append(
                        f"{type(error).__name__} {error!r} after {at:.1f} s, "
                        f"{time.perf_counter() - started:.1f} s into the request"
                    )

    async def watch_memory() -> None:
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            rss = resident_mib(server_pid)
            if rss is not None:
                memory.append((round(time.perf_counter() - started, 1), round(rss, 1)))
            await asyncio.sleep(1.0)

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as http:
        await asyncio.gather(watch_memory(), *(client(n, http) for n in range(clients)))
    duration = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "seconds": round(duration, 2),
        "requests": sent,
        "succeeded": len(latencies),
        "answers_checked": "every answer: pixels, models, top classes and probabilities",
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_examples": examples,
        "requests_per_second": round(len(latencies) / duration, 1),
        "latency_ms": {
            "p50": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1)
            if latencies
            else None,
            "max": round(1000 * latencies[-1], 1) if latencies else None,
        },
        "server_rss_mib_over_time": memory,
    }


def stop_server(server: subprocess.Popen) -> int | None:
    server.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully on Ctrl-C
    try:
        return server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load first")
    parser.add_argument(
        "--runs-root",
        type=Path,
        help="keep the two small runs here and reuse them (default: a temporary folder)",
    )
    parser.add_argument("--max-requests", type=int, default=200_000)
    args = parser.parse_args(argv)
    facts = hardware()
    print(hardware_line(facts), flush=True)
    load_before = os.getloadavg()[0]
    fetch_dataset("mnist", log=print)
    with tempfile.TemporaryDirectory(prefix="convnet-serve-load-") as folder:
        root = args.runs_root or Path(folder)
        runs = []
        for model in ("lenet5", "mlp"):
            found = newest_run(root, model, "mnist")
            if found is not None:
                runs.append(found.path)
                continue
            run_dir, seconds, _ = train_quickly(
                model, root, train_subset=2000, test_subset=500, batch_size=32, log=lambda m: None
            )
            print(f"trained {model} in {seconds:.1f} s", flush=True)
            runs.append(run_dir)
        server, base_url, server_log = start_server(runs, root)
        try:
            bodies = payloads()
            references = reference_answers(base_url, bodies)
            rss_start = resident_mib(server.pid)
            print(
                f"server at {base_url} (pid {server.pid}); warming up {args.warmup:.0f} s …",
                flush=True,
            )
            warmup = asyncio.run(
                load(
                    base_url,
                    bodies,
                    references,
                    args.clients,
                    args.warmup,
                    args.max_requests,
                    server.pid,
                )
            )
            rss_warm = resident_mib(server.pid)
            print(f"{args.clients} clients for {args.seconds:.0f} s …", flush=True)
            measured = asyncio.run(
                load(
                    base_url,
                    bodies,
                    references,
                    args.clients,
                    args.seconds,
                    args.max_requests,
                    server.pid,
                )
            )
            rss_end = resident_mib(server.pid)
            alive = server.poll() is None
        finally:
            exit_status = stop_server(server)
    peak = max((rss for _, rss in measured["server_rss_mib_over_time"]), default=None)
    growth = (rss_end - rss_warm) if rss_end is not None and rss_warm is not None else None
    memory_ok = growth is not None and growth <= GROWTH_TOLERANCE * rss_warm
    print("targets:")
    targets = judge(
        {
            "every answer a 200 equal to the reference answer": measured["errors"] == 0,
            "the server alive at the end": alive,
            f"server memory within {GROWTH_TOLERANCE:.0%} of its size after warm-up": memory_ok,
        }
    )
    document = {
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "host": HOST,
        "warmup": {k: warmup[k] for k in ("seconds", "requests", "errors", "requests_per_second")},
        "measured": measured,
        "server_rss_mib": {
            "at_start": rss_start and round(rss_start, 1),
            "after_warmup": rss_warm and round(rss_warm, 1),
            "peak_during_load": peak,
            "at_end": rss_end and round(rss_end, 1),
            "growth_after_warmup": growth and round(growth, 1),
            "tolerance": f"{GROWTH_TOLERANCE:.0%} of the RSS after warm-up",
        },
        "server_alive_at_end": alive,
        "server_exit_status": exit_status,
        "targets": targets,
    }
    path = save_results(__file__, document)
    problems = [line for line in server_log if "Open http" not in line and " — " not in line]
    if problems:
        print("server log:\n  " + "\n  ".join(problems[-10:]))
    latency = measured["latency_ms"]
    print(
        f"{measured['succeeded']:,} requests in {measured['seconds']} s: "
        f"{measured['requests_per_second']:,} requests/s, p50 {latency['p50']} ms, "
        f"p99 {latency['p99']} ms, errors {measured['errors']} {measured['error_kinds'] or ''}"
    )
    if rss_warm is not None:
        print(
            f"server memory: {rss_start:.0f} MiB at start, {rss_warm:.0f} MiB after warm-up, "
            f"peak {peak:.0f}, {rss_end:.0f} MiB at the end ({growth:+.1f} MiB: "
            f"{'no growth' if memory_ok else 'GREW'} within {GROWTH_TOLERANCE:.0%})"
        )
    print(
        f"load average {load_before:.2f} before, {document['load_average_after']:.2f} after; "
        f"saved {path.name}"
    )
    return 0 if all(target["met"] for target in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
