"""/api/predict in fp32 and in int8 (`convnet serve --precision int8`), on one thread.

Trains lenet5 and mlp as the server does when it finds no run (one epoch on MNIST; fewer
images with --train-images), serves them twice in this process — in fp32, and quantized
(convnet.serve.quantized) — and sends each app the same bodies (MNIST test digits as JSON
pixels, and PNG drawings, as benchmarks/serve_load.py makes them) one request after another
through the ASGI test client: no network, no concurrency, so the figures are the server's
own work per request. The two apps take turns body by body, --rounds times over the bodies;
medians of requests per wall second and per CPU-second (CPU time: a machine shared with
other work lowers it little). Beside them: each network's answer alone (one image: PyTorch fp32 against ONNX
Runtime int8), CPU µs per image; quantizing both networks at the first start and reading them
back at a later one, seconds; and how often int8's top-1 was fp32's on the bodies sent.

    python benchmarks/serve_int8.py [--requests 200] [--rounds 3] [--train-images N]

Results, with the commit, the machine and its load average, go to benchmarks/serve_int8.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, save_results  # noqa: E402
from serve_load import payloads  # noqa: E402

from convnet.data.datasets import fetch_dataset  # noqa: E402
from convnet.data.transforms import normalize, to_model_input  # noqa: E402
from convnet.serve.app import create_app  # noqa: E402
from convnet.serve.models import prepare_models, train_quickly  # noqa: E402
from convnet.serve.quantized import quantize  # noqa: E402
from tests.helpers.serve import TestClient  # noqa: E402

FORWARD_CALLS = 2000  # answers timed per network and precision


def quiet(line: str) -> None:
    pass


def timed_post(client, body: bytes, content_type: str) -> tuple[float, float, dict]:
    """One request: wall and CPU seconds (the whole process: the app runs in its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    reply = client.post("/api/predict", content=body, headers={"Content-Type": content_type})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    reply.raise_for_status()
    return wall, cpu, reply.json()


def one_round(clients: dict, bodies: list[tuple[bytes, str]]) -> tuple[dict, list[bool]]:
    """Every body sent to each app in turn (which app goes first alternates), so a change in
    the machine's load falls on both alike: per app, requests per wall second and per
    CPU-second; and per int8 answer, whether its top-1 was fp32's."""
    spent = {name: [0.0, 0.0] for name in clients}
    agreed: list[bool] = []
    names = list(clients)
    for index, (body, content_type) in enumerate(bodies):
        for name in names if index % 2 == 0 else names[::-1]:
            wall, cpu, answer = timed_post(clients[name], body, content_type)
            spent[name][0] += wall
            spent[name][1] += cpu
            if name == "int8":
                agreed += [p["agrees_with_fp32"] for p in answer["predictions"]]
    rates = {name: (len(bodies) / wall, len(bodies) / cpu) for name, (wall, cpu) in spent.items()}
    return rates, agreed


def forward_microseconds(forward, inputs: torch.Tensor) -> float:
    """CPU µs of one call of `forward` on one image (one thread), after a warm-up."""
    with torch.inference_mode():
        for _ in range(50):
            forward(inputs)
        started = time.process_time()
        for _ in range(FORWARD_CALLS):
            forward(inputs)
    return (time.process_time() - started) / FORWARD_CALLS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="bodies sent per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-images", type=int, help="default: all 60,000")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the int8 session takes the same budget (Int8Model)
    print(hardware_line(hardware()))
    fetch_dataset("mnist")
    with tempfile.TemporaryDirectory(prefix="serve-int8-") as folder:
        root = Path(folder)
        print("Training lenet5 and mlp for one epoch …")
        runs = [
            train_quickly(model, root, train_subset=args.train_images, log=quiet)[0]
            for model in ("lenet5", "mlp")
        ]
        served = {
            name: prepare_models(runs, runs_root=root, log=quiet) for name in ("fp32", "int8")
        }
        started = time.perf_counter()
        quantize(served["int8"], log=quiet)
        first_start = time.perf_counter() - started
        started = time.perf_counter()
        quantize(prepare_models(runs, runs_root=root, log=quiet), log=quiet)
        later_start = time.perf_counter() - started
        notes = {model.role: model.int8.note for model in served["int8"].all()}

        bodies = payloads(args.requests)
        clients = {name: TestClient(create_app(models)) for name, models in served.items()}
        one_round(clients, bodies[:10])  # warm-up
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for round_number in range(args.rounds):
            measured, agreed = one_round(clients, bodies)
            for name, (wall, cpu) in measured.items():
                rates[name].append((wall, cpu))
                print(f"round {round_number + 1} {name}: {wall:.1f} requests/s, {cpu:.1f}/CPU-s")

        forward = {}
        digit = torch.zeros(28, 28, dtype=torch.uint8)
        digit[6:22, 12:16] = 255
        for model in served["int8"].all():
            spec = model.loaded.spec
            inputs = normalize(to_model_input(digit[None], spec.input_size), *spec.normalization)
            forward[model.loaded.name] = {
                "fp32_pytorch_cpu_us": round(forward_microseconds(model.loaded.model, inputs), 1),
                "int8_onnxruntime_cpu_us": round(forward_microseconds(model.int8, inputs), 1),
            }

    summary = {
        name: {
            "requests_per_second": round(statistics.median(wall for wall, _ in values), 1),
            "requests_per_cpu_second": round(statistics.median(cpu for _, cpu in values), 1),
            "rounds": [[round(wall, 1), round(cpu, 1)] for wall, cpu in values],
        }
        for name, values in rates.items()
    }
    ratio = summary["int8"]["requests_per_cpu_second"] / summary["fp32"]["requests_per_cpu_second"]
    document = {
        "threads": 1,
        "requests_per_round": len(bodies),
        "train_images": args.train_images or 60000,
        "predict": summary,
        "int8_over_fp32_per_cpu_second": round(ratio, 3),
        "answer_forward_one_image": forward,
        "quantize_seconds_first_start": round(first_start, 2),
        "quantize_seconds_later_start": round(later_start, 2),
        "int8_top1_agreement_on_bodies": round(sum(agreed) / len(agreed), 4),
        "int8_notes": notes,
    }
    for name, figures in summary.items():
        print(
            f"{name}: {figures['requests_per_second']} requests/s, "
            f"{figures['requests_per_cpu_second']} per CPU-second"
        )
    print(f"int8 / fp32 per CPU-second: {ratio:.3f}; answers alone (CPU µs/image): {forward}")
    print(f"quantizing at start: {first_start:.1f} s first, {later_start:.2f} s later")
    print(f"saved {save_results(__file__, document)}")


if __name__ == "__main__":
    main()
