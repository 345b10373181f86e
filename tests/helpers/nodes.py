"""Training across machines, tried on one: two torchrun "nodes" of one process each, which
meet at a c10d rendezvous on 127.0.0.1 and talk over gloo, each with its own command line
(its own --data path, as separate machines would have)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers.distributed import CPU

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `-m tests.helpers…` finds it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_nodes(
    per_node: list[list[str]],
    *,
    module: str = "convnet",
    max_restarts: int = 0,
    env: dict[str, str] | None = None,
) -> list[subprocess.CompletedProcess]:
    """`python -m MODULE train ARGUMENTS` on 2 nodes × 1 process, node R with per_node[R]
    (and the CPU, gloo): what `torchrun --nnodes 2 --nproc-per-node 1 --node-rank R
    --rdzv-backend c10d --rdzv-endpoint HOST:PORT` runs on each machine. Which node becomes
    rank 0 is the rendezvous's choice; its standard output holds the JSON."""
    port = free_port()
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        # torchrun's agents share their store with the processes by default; with it, the
        # processes restarted across nodes often failed to connect (gloo, PyTorch 2.14.1),
        # without it they did not (docs/command-line.md says so too)
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        **(env or {}),
    }
    with tempfile.TemporaryDirectory() as logs:
        processes = []
        for rank, arguments in enumerate(per_node):
            out = open(Path(logs) / f"{rank}.out", "w+")  # noqa: SIM115 (closed below)
            err = open(Path(logs) / f"{rank}.err", "w+")  # noqa: SIM115
            command = [
                sys.executable, "-m", "torch.distributed.run",
                "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                "--max-restarts", str(max_restarts),
                "-m", module, "train", *arguments, *CPU, "--backend", "gloo", "--no-report",
            ]  # fmt: skip
            processes.append(
                (subprocess.Popen(command, stdout=out, stderr=err, env=environment), out, err)
            )
        results = []
        for process, out, err in processes:
            try:
                process.wait(timeout=300)
            finally:
                process.kill()  # only if the wait timed out: it has ended otherwise
            out.seek(0), err.seek(0)
            results.append(
                subprocess.CompletedProcess(
                    process.args, process.returncode, out.read(), err.read()
                )
            )
            out.close(), err.close()
    return results


def rank_zero_output(results: list[subprocess.CompletedProcess]) -> str:
    """The standard output of the node that was rank 0 (the others print nothing)."""
    printed = [result.stdout for result in results if result.stdout.strip()]
    assert len(printed) == 1, [result.stderr[-2000:] for result in results]
    return printed[0]
