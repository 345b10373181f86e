"""Does the automatic thread count pick the faster one when other programs share the cores?
(issue 31; `convnet.engine.threads`).

For 0, 1, … cores kept busy by spinning processes (`--busy 0 1`), it trains LeNet-5 for one
epoch on `--images` MNIST digits with 1 thread and with every core, and records which count
the automatic rule chose (idle cores, measured over a tenth of a second) and which the
former rule (1 thread whenever the one-minute load average reaches the core count) would
have chosen, from the load average at that moment. Images per second are wall-clock: what
a user waits for. Run: `python benchmarks/threads_busy.py [--busy 0 1] [--images 20000]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, judge, save_results  # noqa: E402

import convnet  # noqa: E402
from convnet.engine.threads import automatic_threads  # noqa: E402


def images_per_second(threads: int, images: int) -> float:
    started = time.perf_counter()
    convnet.fit(
        "lenet5", dataset="mnist", epochs=1, train_subset=images, test_subset=1000,
        threads=threads, log=lambda *_: None,
    )  # fmt: skip
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--images", type=int, default=20000)
    options = parser.parse_args()
    print(hardware_line(hardware()))
    cores = os.cpu_count() or 1
    images_per_second(cores, 1000)  # once: loading MNIST and building kernels count for none
    conditions, targets = [], {}
    for busy in options.busy:
        spinners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)
        ]
        try:
            time.sleep(2)  # the spinners running, the load average starting to climb
            chosen = automatic_threads()
            former = 1 if os.getloadavg()[0] >= cores else cores
            rates = {count: images_per_second(count, options.images) for count in (1, cores)}
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
        faster = max(rates, key=rates.get)
        conditions.append({
            "busy_cores": busy, "automatic_threads": chosen, "former_rule_threads": former,
            "load_average": round(os.getloadavg()[0], 2),
            "images_per_second": {str(count): round(rate, 1) for count, rate in rates.items()},
        })  # fmt: skip
        print(f"{busy} busy: 1 thread {rates[1]:,.0f} images/s, {cores} threads "
              f"{rates[cores]:,.0f}; automatic chose {chosen}, the former rule {former}")  # fmt: skip
        close = min(rates.values()) >= 0.95 * max(rates.values())  # within noise: either is right
        targets[f"{busy} busy cores: the automatic count is the faster one"] = (
            chosen == faster or close
        )
    document = {"images": options.images, "conditions": conditions, "targets": judge(targets)}
    print(f"saved {save_results(__file__, document)}")


if __name__ == "__main__":
    main()
