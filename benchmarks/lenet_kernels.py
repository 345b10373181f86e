"""Micro-benchmarks of the two LeNet-5 kernels docs/benchmarks.md discusses.

1. Max pooling of C1's six 28×28 maps at batch 256, bf16, channels-last (as the engine
   runs): PyTorch's native forward and its forward + backward, convnet's compiled kernel's
   forward (convnet/models/pooling.py) and its forward + PyTorch's backward (training's), the
   same forward written as three strided maxima, and oneDNN's own forward
   (`torch.mkldnn_max_pool2d`), checked bit for bit against the native one. The memory floor: the bytes read and written once ÷ the
   bandwidth of a 64 MiB copy into memory already touched, measured here.
2. C5 at batch 128 (16 maps of 5×5 → 120): `nn.Conv2d` against the matrix product
   `WholeInputConv2d` computes, forward + backward, in fp32 and in bf16 autocast.

Medians of many calls (milliseconds per call) after warm-up; the native and compiled pooling
alternate call by call, so a machine whose load changes favours neither. Run:
`python benchmarks/lenet_kernels.py [--repeats 50] [--threads N]`; saved in
benchmarks/lenet_kernels.json (with --threads 1) or lenet_kernels_N_threads.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, load_average, save_results  # noqa: E402

from convnet.models.lenet import WholeInputConv2d  # noqa: E402
from convnet.models.pooling import kernel_status, max_pool_2x2  # noqa: E402

POOL_BATCH, C5_BATCH = 256, 128


def milliseconds(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of one call, in ms, after three warm-up calls."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)


def interleaved_milliseconds(calls: dict[str, Callable[[], object]], repeats: int) -> dict:
    """Median wall time of each call, in ms, the calls taking turns (after three warm-ups)."""
    for call in calls.values():
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: round(1000 * statistics.median(spent), 3) for name, spent in times.items()}


def strided_maxima(x: torch.Tensor) -> torch.Tensor:
    """2×2 max pooling, stride 2, as three elementwise maxima of strided views."""
    return torch.maximum(
        torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
        torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]),
    )


def pooling(repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(POOL_BATCH, 6, 28, 28, generator=generator).to(torch.bfloat16)
    maps = maps.contiguous(memory_format=torch.channels_last)
    trainable = maps.clone().requires_grad_()
    upstream = torch.randn(POOL_BATCH, 6, 14, 14, generator=generator).to(torch.bfloat16)
    upstream = upstream.contiguous(memory_format=torch.channels_last)

    def forward_backward(pool: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            pool(trainable).backward(upstream)
            trainable.grad = None

        return step

    native = lambda x: F.max_pool2d(x, 2)  # noqa: E731
    result = {
        "compiled_kernel": kernel_status(),
        **interleaved_milliseconds(
            {
                "native_forward_ms": lambda: native(maps),
                "compiled_forward_ms": lambda: max_pool_2x2(maps),
                "native_forward_backward_ms": forward_backward(native),
                "compiled_forward_backward_ms": forward_backward(max_pool_2x2),
            },
            repeats,
        ),
        "compiled_equal": bool(torch.equal(max_pool_2x2(maps), native(maps))),
        "strided_maxima_forward_ms": milliseconds(lambda: strided_maxima(maps), repeats),
        "strided_maxima_equal": bool(torch.equal(strided_maxima(maps), F.max_pool2d(maps, 2))),
    }
    try:
        dense = maps.contiguous()
        onednn = lambda: torch.mkldnn_max_pool2d(dense.to_mkldnn(), [2, 2], [2, 2])  # noqa: E731
        result["onednn_forward_ms"] = milliseconds(onednn, repeats)
        result["onednn_equal"] = bool(torch.equal(onednn().to_dense(), F.max_pool2d(dense, 2)))
    except RuntimeError as error:  # a build without oneDNN
        result["onednn_forward_ms"], result["onednn_error"] = None, str(error)
    # Memory floor: read the maps once, write the pooled quarter once, at copy bandwidth.
    big, into = (
        torch.ones(64 * 2**20, dtype=torch.uint8),
        torch.zeros(64 * 2**20, dtype=torch.uint8),
    )
    copy_seconds = milliseconds(lambda: into.copy_(big), max(5, repeats // 5)) / 1000
    bandwidth = 2 * big.numel() / copy_seconds  # bytes read + written per second
    moved = maps.numel() * maps.element_size() * 1.25
    result["copy_bandwidth_gb_per_s"] = round(bandwidth / 1e9, 2)
    result["memory_floor_forward_ms"] = round(1000 * moved / bandwidth, 3)
    return result


def c5(repeats: int) -> dict:
    torch.manual_seed(0)
    convolution = torch.nn.Conv2d(16, 120, 5).to(memory_format=torch.channels_last)
    product = WholeInputConv2d(16, 120, 5).to(memory_format=torch.channels_last)
    product.load_state_dict(convolution.state_dict())
    inputs = torch.randn(C5_BATCH, 16, 5, 5).contiguous(memory_format=torch.channels_last)
    inputs.requires_grad_()
    result = {}
    for precision in ("fp32", "bf16"):
        for name, layer in (("conv2d", convolution), ("matrix_product", product)):

            def step(layer: torch.nn.Module = layer, precision: str = precision) -> None:
                with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                    output = layer(inputs)
                output.float().sum().backward()
                inputs.grad = None
                layer.zero_grad(set_to_none=True)

            result[f"{name}_{precision}_forward_backward_ms"] = milliseconds(step, repeats)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# LeNet-5 kernels — {hardware_line(hardware())}, {torch.get_num_threads()} threads")
    pool = pooling(args.repeats)
    print(f"max pooling of C1's maps, batch {POOL_BATCH}, bf16 channels-last (ms per call):")
    for key, value in pool.items():
        print(f"  {key:<32} {value}")
    conv = c5(args.repeats)
    print(f"C5 at batch {C5_BATCH}, forward + backward (ms per call):")
    for key, value in conv.items():
        print(f"  {key:<40} {value}")
    threads = torch.get_num_threads()
    path = save_results(
        __file__,
        {"repeats": args.repeats, "threads": threads, "pooling": pool, "c5": conv},
        name=None if threads == 1 else f"lenet_kernels_{threads}_threads.json",
    )
    print(f"# load average {load_average()} at the end; saved {path.name}")


if __name__ == "__main__":
    main()
