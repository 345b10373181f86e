"""The HTTP server under the page: uvicorn, with bounds on what a client can hold.

uvicorn closes a connection idle between requests after `timeout_keep_alive`, and h11 refuses
request headers larger than `h11_max_incomplete_event_size`; nothing in uvicorn closes a
connection that never finishes its request headers, or one that trickles its body, and its
`limit_concurrency` only answers 503 to requests that arrive (an idle connection never sends
one, so it keeps its file descriptor). So the protocol here adds, on top of uvicorn's h11
protocol:

- a deadline for each request's headers (HEADER_SECONDS from the connection opening or the
  previous answer), one for its body (BODY_CUTOFF_SECONDS from the headers; the app
  answers 408 at BODY_SECONDS before that, for the routes that read a body) and one for
  its answer (ANSWER_SECONDS from the request's end: a client that does not read what it
  asked for holds the connection no longer);
- at most MAX_CONNECTIONS open at once, never more than the process's descriptors allow:
  when one more arrives, the connection that has kept the server waiting on its client
  longest (for headers or a body: idle, half-sent, slow) is closed to make room, and when
  every connection is being answered, the new one is closed at once.

Repeated log lines (a client gone, malformed requests, an exhausted descriptor table) are
written once per LOG_WINDOW_SECONDS with a count, never once per connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from convnet.serve.app import BODY_SECONDS

try:
    import resource  # Unix only
except ImportError:  # Windows: no descriptor limit to read or raise
    resource = None  # type: ignore[assignment]

log = logging.getLogger("uvicorn.error")

# How long a client may take to send a request's line and headers: Apache's mod_reqtimeout
# default (header=20-40) starts at 20 s; a request's headers are under 2 kB, one packet on
# any network, so only a stalled or hostile client needs longer.
HEADER_SECONDS = 20.0
# The connection's own cut-off for a body, for routes that never read one (a client that
# trickles a body to GET /): later than the app's 408 (at BODY_SECONDS, 20 s), so that answer
# is what a client of POST /api/predict sees.
BODY_CUTOFF_SECONDS = BODY_SECONDS + 5.0
# How long a request may take from its end to the end of its answer: a prediction takes 20–60
# ms, and its answer (about 70 kB of JSON) reaches even a 16 kbit/s link in 35 s.
ANSWER_SECONDS = 60.0
# uvicorn's default, stated: an idle connection between requests is closed after 5 s.
KEEP_ALIVE_SECONDS = 5
# h11's own default (16 KiB) for a request line and headers, stated: larger ones get a 400.
HEADER_BYTES = 16 * 1024
# Open connections at once. A browser opens at most 6 to one host (its per-host limit), so
# 256 serves about 40 visitors at their most (a class on one page); each holds at most a 1 MB
# body and 16 KiB of headers, so 256 bound what clients hold to about 260 MB.
MAX_CONNECTIONS = 256
# The listening queue, and how many connections asyncio accepts in one turn of its loop
# before the protocol can close the excess: Linux's historic somaxconn default.
BACKLOG = 128
# Descriptors kept beside the connections: the server's own (standard streams, the event
# loop's, the listening socket: 7 measured at rest; 64 leave room for files a library opens)
# and two turns' accepts (BACKLOG each) not yet closed.
RESERVED_DESCRIPTORS = 64 + 2 * BACKLOG
LOG_WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class Limits:
    """The bounds on connections (tests shrink them to run in seconds)."""

    header_seconds: float = HEADER_SECONDS
    body_cutoff_seconds: float = BODY_CUTOFF_SECONDS
    answer_seconds: float = ANSWER_SECONDS
    keep_alive_seconds: float = KEEP_ALIVE_SECONDS
    connections: int = MAX_CONNECTIONS
    header_bytes: int = HEADER_BYTES
    backlog: int = BACKLOG


class RepeatFilter(logging.Filter):
    """Lets a message through once per `window` seconds; the next one that passes says how
    many like it were held back (a flood of one kind becomes a line every `window` s)."""

    def __init__(self, window: float = LOG_WINDOW_SECONDS) -> None:
        super().__init__()
        self.window = window
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(getattr(record, "repeat_key", record.msg))
        now = time.monotonic()
        if now - self.last.get(key, -self.window) < self.window:
            self.held[key] = self.held.get(key, 0) + 1
            return False
        self.last[key] = now
        held = self.held.pop(key, 0)
        if held:
            record.msg = (
                f"{record.getMessage()} ({held:,} more like it in the last {self.window:.0f} s)"
            )
            record.args = ()
        return True


def descriptor_limit() -> int | None:
    """The process's limit on open files, raised to the hard limit where it is lower (as Go's
    runtime does on start): 1,024 is a common soft limit with a far higher hard one. None
    where there is no such limit (Windows) or it is infinite."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(limits: Limits, descriptors: int | None = None) -> int:
    """MAX_CONNECTIONS, or fewer where the descriptor limit would not hold them all."""
    descriptors = descriptor_limit() if descriptors is None else descriptors
    if descriptors is None:
        return limits.connections
    return max(1, min(limits.connections, descriptors - RESERVED_DESCRIPTORS))


def guarded_protocol(limits: Limits, cap: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with request deadlines and a connection cap shared by the
    connections of one server (see the module's docstring)."""

    # Connections on which the server waits for the client (headers or a body), in the order
    # they began to wait: the first is the one to close when the cap is reached.
    waiting: OrderedDict[H11Protocol, None] = OrderedDict()

    class GuardedProtocol(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.deadline: asyncio.TimerHandle | None = None
            self.phase = ""
            if len(self.connections) > cap:
                oldest = next(iter(waiting), None)
                if oldest is None:  # every other connection is being answered: refuse this one
                    log.warning(
                        "Closed a new connection: all %d are busy with requests.",
                        cap,
                        extra={"repeat_key": "busy"},
                    )
                    transport.close()
                    return
                log.warning(
                    "At %d open connections: closed the one that kept the server waiting "
                    "longest to make room.",
                    cap,
                    extra={"repeat_key": "evicted"},
                )
                oldest.close()
            self.follow()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self.follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.follow()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            self.settle("closed")

        def close(self) -> None:
            self.settle("closed")
            if not self.transport.is_closing():
                self.transport.close()

        def follow(self) -> None:
            """Arm the deadline of the part of the request the client owes next."""
            if self.transport.is_closing():
                self.settle("closed")
            elif self.conn.their_state is h11.IDLE:  # its next request line and headers
                self.settle("headers", limits.header_seconds)
            elif self.conn.their_state is h11.SEND_BODY:
                self.settle("body", limits.body_cutoff_seconds)
            else:  # the request is in; the app answers it
                self.settle("answer", limits.answer_seconds)

        def settle(self, phase: str, seconds: float | None = None) -> None:
            if phase == self.phase:  # a deadline runs from the phase's start: bytes that
                return  # trickle in do not extend it
            self.phase = phase
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None
            if seconds is not None:
                self.deadline = self.loop.call_later(seconds, self.close)
            waiting.pop(self, None)
            if phase in ("headers", "body"):
                waiting[self] = None  # the newest to wait

    return GuardedProtocol


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The loop's error handler: an exhausted descriptor table while accepting (EMFILE,
    ENFILE, ENOBUFS, ENOMEM) is one line per LOG_WINDOW_SECONDS, not a traceback per try
    (asyncio logs each failed accept, and schedules a retry for each a second later: once
    the server has stopped, those retries find the listening socket closed and are dropped
    here too); the rest as asyncio would."""
    message = context.get("message", "")
    error = context.get("exception")
    if message.startswith("socket.accept() out of system resource"):
        log.warning(
            "Cannot accept connections: %s; retrying.",
            getattr(error, "strerror", None) or error,
            extra={"repeat_key": "accept"},
        )
        return
    retry = "_start_serving" in repr(context.get("handle"))
    if retry and isinstance(error, (ValueError, OSError)):  # the listening socket is closed
        return
    loop.default_exception_handler(context)


class Server(uvicorn.Server):
    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(quiet_accept_errors)
        await super().serve(sockets=sockets)


def make_server(app, limits: Limits = Limits(), log_level: str = "warning") -> Server:
    """A uvicorn server for `app` with `limits` (run it with `.run(sockets=[listener])`)."""
    cap = connection_cap(limits)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(limits, cap),
        log_level=log_level,
        timeout_keep_alive=limits.keep_alive_seconds,
        h11_max_incomplete_event_size=limits.header_bytes,
        backlog=limits.backlog,
    )
    for old in [f for f in log.filters if isinstance(f, RepeatFilter)]:
        log.removeFilter(old)
    log.addFilter(RepeatFilter())
    server = Server(config)
    server.connection_cap = cap  # type: ignore[attr-defined]
    return server
