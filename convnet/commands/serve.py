"""`convnet serve`: the web page where a user draws a digit and watches the CNN see it."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from pathlib import Path

from convnet.commands.common import (
    DATA_DIR_HELP,
    Command,
    add_threads_argument,
    apply_threads,
    data_dir,
    log,
)
from convnet.errors import UserError
from convnet.i18n import LANGUAGES, check_language


def configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        dest="runs",
        action="extend",
        nargs="+",
        default=[],
        metavar="RUN_DIR",
        help="a lenet5-like CNN run and/or an mlp run (default: the one of lowest test error "
        "under --runs-dir, if it is trained well enough; else train one for one epoch now)",
    )
    parser.add_argument("--runs-dir", default="runs", help="where to look for and put runs")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind; 127.0.0.1 is this machine only"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    add_threads_argument(parser)
    parser.add_argument(
        "--lang",
        help=f"the page's language, {' or '.join(LANGUAGES)} (default: the browser's; "
        "a visitor can still switch)",
    )


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket, or a clear error when the address is taken or not ours."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, not {port}.")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise UserError(
            f"Cannot listen on {host}:{port} ({error.strerror or error}); "
            "choose another --port or --host."
        ) from None
    listener.listen(128)
    return listener


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from convnet.data.datasets import fetch_dataset, load_dataset
    from convnet.serve.app import create_app
    from convnet.serve.models import prepare_models

    language = check_language(args.lang) if args.lang is not None else None
    apply_threads(args)
    listener = open_socket(args.host, args.port)
    fetch_dataset("mnist", data_dir(args), log=log)
    models = prepare_models(
        [Path(run) for run in args.runs], Path(args.runs_dir), data_dir(args), log=log
    )
    samples = load_dataset("mnist", "test", data_dir(args))
    app = create_app(models, samples, language)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if not ipaddress.ip_address(host).is_loopback:
        log(f"Note: {host} is not a loopback address; others on your network can use the page.")
    log(f"Open http://{shown}:{port}/ in a browser (Ctrl+C stops the server).")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[listener])
    return 0


COMMANDS: dict[str, Command] = {
    "serve": Command(
        "a web page: draw a digit, watch LeNet-5's feature maps, shift it and compare with an MLP",
        configure_serve,
        run_serve,
    ),
}
