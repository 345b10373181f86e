"""The real server (the app over untrained LeNet-5 and MLP, uvicorn with the limits of
`convnet serve`) on a free loopback port, for tests that need sockets: run as a script it
prints "port N" and serves until it is stopped; `start` does that in a subprocess whose
standard error, the server's log, goes to a file.

    python bounded_server.py [--header-seconds S] [--body-seconds S] [--keep-alive S]
                             [--connections N] [--cap N] [--busy N] [--files N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def untrained_models():
    """LeNet-5 and an MLP as the page serves them, untrained: how the server answers does
    not depend on training, and building them takes milliseconds."""
    import torch

    from convnet.engine.run import LoadedModel
    from convnet.models import get_model, get_model_spec
    from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels

    torch.manual_seed(0)
    served = []
    for role, name in ((CNN, "lenet5"), (ORDINARY, "mlp")):
        model = get_model(name, num_classes=10).eval()
        loaded = LoadedModel(name, get_model_spec(name), model, tuple(str(i) for i in range(10)))
        served.append(ServedModel(role, loaded, "untrained, for tests"))
    return ServedModels(*served)


class Started:
    """A server subprocess: its port, its log, and a way to count its open descriptors."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.port, self.log = process, port, log

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text()


def start(log: Path, *options: str) -> Started:
    """Start the server with `options` (see the module's docstring); wait for its port."""
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, str(HERE / "bounded_server.py"), *options],
        stdout=subprocess.PIPE,
        stderr=handle,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    handle.close()
    line = process.stdout.readline()  # "port N", once the socket listens
    if not line.startswith("port "):
        process.kill()
        process.wait()
        raise RuntimeError(f"the server did not start: {line!r}\n{log.read_text()}")
    time.sleep(0.3)  # uvicorn starts accepting just after the port is printed
    return Started(process, int(line.split()[1]), log)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--header-seconds", type=float)
    parser.add_argument("--body-seconds", type=float)
    parser.add_argument("--keep-alive", type=float)
    parser.add_argument("--connections", type=int)
    parser.add_argument("--cap", type=int, help="the connection cap, whatever the file limit")
    parser.add_argument("--busy", type=int)
    parser.add_argument("--files", type=int, help="the process's limit on open files")
    args = parser.parse_args()
    if args.files is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (args.files, args.files))

    import torch

    from convnet.commands.serve import open_socket
    from convnet.serve import server as server_module
    from convnet.serve.app import create_app

    torch.set_num_threads(1)
    options = {}
    if args.busy is not None:
        options["max_busy"] = args.busy
    if args.body_seconds is not None:
        options["body_seconds"] = args.body_seconds
    app = create_app(untrained_models(), **options)
    limits = {
        name: value
        for name, value in {
            "header_seconds": args.header_seconds,
            "body_cutoff_seconds": None if args.body_seconds is None else args.body_seconds + 1,
            "keep_alive_seconds": args.keep_alive,
            "connections": args.connections,
        }.items()
        if value is not None
    }
    if args.cap is not None:
        server_module.connection_cap = lambda limits, descriptors=None: args.cap
    server = server_module.make_server(app, server_module.Limits(**limits))
    listener = open_socket("127.0.0.1", 0)
    print(f"port {listener.getsockname()[1]}", flush=True)
    server.run(sockets=[listener])


if __name__ == "__main__":
    main()
