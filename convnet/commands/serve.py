"""`convnet serve`: the web page where a user draws a digit and watches the CNN see it."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from pathlib import Path

from convnet.commands.common import (
    DATA_DIR_HELP,
    Command,
    add_calibration_arguments,
    add_threads_argument,
    apply_threads,
    check_calibration,
    check_counts,
    data_dir,
    log,
)
from convnet.errors import UserError
from convnet.i18n import LANGUAGES, check_language
from convnet.serve.training import DEFAULT_BUDGET_MINUTES


def configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        dest="runs",
        action="extend",
        nargs="+",
        default=[],
        metavar="RUN_DIR",
        help="a lenet5-like CNN run and/or an mlp run (default: the CNN run of lowest test "
        "error under --runs-dir if it is trained well enough, else one trained for an epoch "
        "now; the other network as --pair says)",
    )
    parser.add_argument("--runs-dir", default="runs", help="where to look for and put runs")
    parser.add_argument(
        "--pair",
        default="matched",
        help="how a network not given is chosen: 'matched', trained like the other one (found "
        "under --runs-dir, else trained now), so the two differ in architecture only; or "
        "'best', the run of lowest test error whatever its training (the page then lists "
        "how the two were trained differently)",
    )
    parser.add_argument(
        "--augmentation-switch",
        action="store_true",
        help="also serve each network trained the other way (with or without augmentation), "
        "training the missing ones now, so the page can show what augmentation does apart "
        "from what the architecture does (networks found under --runs-dir are offered anyway)",
    )
    parser.add_argument(
        "--max-training-minutes",
        type=float,
        default=DEFAULT_BUDGET_MINUTES,
        metavar="MINUTES",
        help="how long the networks trained at start may take together; a training that "
        "does not fit stops after the epochs that do, and the next start carries it on",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; 127.0.0.1 is this machine only, 0.0.0.0 every network it is on "
        "(anyone there can then use the page)",
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    parser.add_argument(
        "--precision",
        default="fp32",
        help="what computes the answers, on the CPU: fp32, or int8 (a CPU with VNNI: each "
        "network quantized by ONNX Runtime at start, calibrated once on --calibration-images "
        "of its run's training images and kept beside the run; the page's inside views stay "
        "fp32 and it shows whether int8 and fp32 agree on each drawing)",
    )
    add_calibration_arguments(parser)
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


# Where a UDP socket "connected" to these documentation-only addresses (RFC 5737, RFC 3849)
# would send from: the address of the interface the default route leaves by. Connecting a
# UDP socket sends nothing.
ROUTE_PROBES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}


def machine_addresses(family: int) -> list[str]:
    """This machine's addresses in `family` that another device could reach it at: the
    default route's source address and those its host name resolves to (no loopback,
    link-local or unspecified ones); empty where there is no network."""
    found: list[str] = []
    try:
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.connect((ROUTE_PROBES[family], 9))
            found.append(probe.getsockname()[0])
        finally:
            probe.close()
    except OSError:
        pass
    try:
        for *_, address in socket.getaddrinfo(socket.gethostname(), None, family):
            found.append(str(address[0]))
    except (OSError, UnicodeError):
        pass
    usable = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        remote = not (address.is_loopback or address.is_link_local or address.is_unspecified)
        if remote and str(address) not in usable:
            usable.append(str(address))
    return usable


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def listening_message(host: str, port: int) -> list[str]:
    """The lines that say where the page is: for a loopback address, its URL; for any other,
    the URLs it is reachable at and a warning that anyone on the network can use it."""
    address = ipaddress.ip_address(host)
    if address.is_loopback:
        return [f"Open {url(host, port)} in a browser (Ctrl+C stops the server)."]
    if address.is_unspecified:  # every interface: here by loopback, elsewhere by the network
        local = "::1" if address.version == 6 else "127.0.0.1"
        families = [socket.AF_INET6, socket.AF_INET] if address.version == 6 else [socket.AF_INET]
        others = [a for family in families for a in machine_addresses(family)]
    else:
        local, others = None, [host]
    lines = []
    if local is not None:
        lines.append(
            f"Open {url(local, port)} in a browser on this machine (Ctrl+C stops the server)."
        )
    if others:
        lines.append(
            "From other devices on your network: " + ", ".join(url(a, port) for a in others)
        )
    else:
        lines.append("This machine has no network address other devices could use right now.")
    lines.append(
        f"Warning: with --host {host}, anyone who can reach this machine on port {port} can use "
        "the page and its API, with no password: it runs their requests on this computer. "
        "Leave --host out (127.0.0.1) to keep the page to this machine."
    )
    return lines


def run_serve(args: argparse.Namespace) -> int:
    from convnet.data.datasets import fetch_dataset, load_dataset
    from convnet.serve.app import create_app
    from convnet.serve.models import check_pairing, prepare_models
    from convnet.serve.quantized import check_precision, quantize
    from convnet.serve.server import MAX_CONNECTIONS, make_server

    language = check_language(args.lang) if args.lang is not None else None
    check_pairing(args.pair)
    precision = check_precision(args.precision)
    check_counts(args, "calibration_images")
    check_calibration(args, precision)
    if not args.max_training_minutes >= 0:
        raise UserError(
            f"--max-training-minutes must be 0 or more, not {args.max_training_minutes:g}."
        )
    apply_threads(args)
    listener = open_socket(args.host, args.port)
    fetch_dataset("mnist", data_dir(args), log=log)
    models = prepare_models(
        [Path(run) for run in args.runs],
        Path(args.runs_dir),
        data_dir(args),
        log=log,
        pair=args.pair,
        switch=args.augmentation_switch,
        budget_minutes=args.max_training_minutes,
    )
    if precision == "int8":
        quantize(models, args.calibration, args.calibration_images, data_dir(args), log)
    samples = load_dataset("mnist", "test", data_dir(args))
    app = create_app(models, samples, language)
    server = make_server(app)
    if server.connection_cap < MAX_CONNECTIONS:
        log(
            f"Note: this process may open few files, so the server keeps at most "
            f"{server.connection_cap} connections open at once (not {MAX_CONNECTIONS})."
        )
    host, port = listener.getsockname()[:2]
    for line in listening_message(host, port):
        log(line)
    server.run(sockets=[listener])
    return 0


COMMANDS: dict[str, Command] = {
    "serve": Command(
        "a web page: draw a digit, watch LeNet-5's feature maps, shift it and compare with an MLP",
        configure_serve,
        run_serve,
    ),
}
