"""The real server on a loopback port, through raw sockets: idle, half-sent and trickling
connections are closed by their deadlines, a client that leaves mid-body is one log line,
neither 1,100 idle connections nor slow bodies keep others out, and an exhausted
descriptor table is a line in the log, not a flood. The deadlines are shortened to seconds (the command's are in
docs/reliability.md); the server runs in a subprocess whose log is read as a user's."""

from __future__ import annotations

import json
import resource
import socket
import time

import pytest

from tests.helpers.bounded_server import start

# Shortened deadlines: headers 1 s, the app's body 1 s (the connection's cut-off 2 s), idle
# between requests 1 s.
SHORT = ["--header-seconds", "1", "--body-seconds", "1", "--keep-alive", "1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = start(tmp_path_factory.mktemp("server") / "server.log", *SHORT)
    yield started
    started.stop()


def connect(port: int, timeout: float = 10) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    client.settimeout(timeout)
    return client


def closed_after(client: socket.socket, limit: float = 10) -> float:
    """Seconds until the server closes `client` (reading and dropping what it answers)."""
    started = time.monotonic()
    client.settimeout(limit)
    try:
        while client.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def answer(client: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer read off `client`: status, headers, body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", 0)):
        body += client.recv(65536)
    return int(lines[0].split()[1]), headers, body


def get(port: int, path: str = "/api/models") -> int:
    with connect(port) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        return answer(client)[0]


def log_lines(started) -> list[str]:
    return [line for line in started.log.read_text().splitlines() if line.strip()]


def test_a_connection_that_sends_nothing_is_closed_after_the_header_deadline(server):
    with connect(server.port) as idle:
        seconds = closed_after(idle)
    assert 0.8 < seconds < 4, seconds


def test_headers_trickled_a_byte_at_a_time_do_not_extend_the_deadline(server):
    with connect(server.port) as slow:
        started = time.monotonic()
        slow.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n")
        try:
            while time.monotonic() - started < 6:
                slow.sendall(b"X")  # a header that never ends
                time.sleep(0.1)
        except OSError:  # closed under it: a reset or a broken pipe
            pass
        seconds = time.monotonic() - started
    assert seconds < 4, seconds


def test_a_body_trickled_to_a_route_that_reads_none_is_cut_off(server):
    """GET / answers without reading a body; a client that goes on sending one a byte at a
    time is closed at the connection's body cut-off (uvicorn alone would keep it)."""
    with connect(server.port) as slow:
        started = time.monotonic()
        slow.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n")
        status, _, _ = answer(slow)
        try:
            while time.monotonic() - started < 8:
                slow.sendall(b"X")
                time.sleep(0.1)
        except OSError:
            pass
        seconds = time.monotonic() - started
    assert status == 200 and seconds < 5, (status, seconds)


def test_a_slow_body_to_predict_is_answered_408_and_closed(server):
    with connect(server.port) as slow:
        slow.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 3000\r\n\r\n" + b'{"pixels": ['
        )
        status, headers, body = answer(slow)
        assert status == 408 and headers["connection"] == "close"
        assert "did not arrive within 1 s (12 bytes came)" in json.loads(body)["error"]
        assert closed_after(slow) < 2


def test_an_idle_connection_between_requests_is_closed_after_keep_alive(server):
    with connect(server.port) as client:
        client.sendall(b"GET /api/models HTTP/1.1\r\nHost: test\r\n\r\n")
        assert answer(client)[0] == 200
        assert 0.8 < closed_after(client) < 4


def test_a_client_that_leaves_mid_body_is_one_log_line(server):
    before = log_lines(server)
    for _ in range(5):  # the first is one line; the others within 10 s are counted, not logged
        with connect(server.port) as leaving:
            leaving.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
                b"Content-Length: 1000\r\n\r\n" + bytes(10)
            )
            time.sleep(0.2)  # the app is reading the body
        time.sleep(0.2)
    assert get(server.port) == 200
    new = log_lines(server)[len(before) :]
    assert len(new) == 1, new
    assert "the connection ended after 10 of 1,000 bytes of its POST /api/predict body" in new[0]
    assert "Traceback" not in server.log.read_text()


def raise_own_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"this test opens {needed} sockets; the hard file limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_1100_idle_connections_do_not_starve_the_server(tmp_path):
    """The measurement that found it: 1,100 connections opened and left idle against a server
    that may open 1,024 files. Each new connection past the cap (256) closes the one that
    has kept the server waiting longest, so the server's descriptors stay bounded, other clients are answered at once,
    the idle ones are all closed by the header deadline, and the log holds a line or two."""
    raise_own_file_limit(1300)
    started = start(tmp_path / "server.log", "--header-seconds", "2", "--files", "1024")
    idle: list[socket.socket] = []
    try:
        for _ in range(1100):
            idle.append(connect(started.port))
        for client in idle[-50:]:  # some half-send a request
            client.sendall(b"POST /api/predict HTTP/1.1\r\nContent-Length: 1000\r\n")
        time.sleep(0.5)
        descriptors = started.descriptors()
        timings = []
        for _ in range(5):
            begun = time.monotonic()
            assert get(started.port) == 200
            timings.append(time.monotonic() - begun)
        time.sleep(2.5)  # past the header deadline
        still_open = 0
        for client in idle:
            client.setblocking(False)
            try:
                still_open += client.recv(1) != b""
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        assert get(started.port) == 200
    finally:
        for client in idle:
            client.close()
        log = started.stop()
    assert descriptors <= 256 + 64, descriptors
    assert max(timings) < 2, timings
    assert still_open == 0
    assert "Traceback" not in log and len(log.splitlines()) <= 3, log[-2000:]


def test_slow_bodies_filling_every_connection_do_not_keep_others_out(tmp_path):
    """At the cap (8 here), every connection sending a body slowly: a new client's request
    closes the one that has kept the server waiting longest, and is answered."""
    started = start(tmp_path / "server.log", "--connections", "8", "--header-seconds", "30")
    slow: list[socket.socket] = []
    try:
        for _ in range(8):
            client = connect(started.port)
            client.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
                b"Content-Length: 100000\r\n\r\n\x89PNG"
            )
            slow.append(client)
            time.sleep(0.05)
        time.sleep(0.3)
        begun = time.monotonic()
        assert get(started.port) == 200
        assert time.monotonic() - begun < 2
        assert closed_after(slow[0], 2) < 2  # the oldest made room
    finally:
        for client in slow:
            client.close()
        log = started.stop()
    assert "closed the one that kept the server waiting longest" in log


def test_an_exhausted_descriptor_table_is_a_line_not_a_flood(tmp_path):
    """A server forced past its descriptors (64 files, a cap of 500 connections): accepting
    fails with EMFILE while 150 connections stay open. asyncio logs a traceback for each
    failed accept, and for each of its retries still pending when the server stops; here it
    is one line per 10 s, and the server answers again once the connections go."""
    raise_own_file_limit(400)
    started = start(
        tmp_path / "server.log", "--files", "64", "--cap", "500", "--header-seconds", "30"
    )
    idle: list[socket.socket] = []
    try:
        for _ in range(150):
            idle.append(connect(started.port))
        time.sleep(2.5)
        for client in idle:
            client.close()
        idle.clear()
        time.sleep(1.5)  # asyncio retries accepting a second after a failure
        assert get(started.port) == 200
        for _ in range(150):  # again, and the server stopped while its retries are pending
            idle.append(connect(started.port))
        time.sleep(0.3)
        log = started.stop()
    finally:
        for client in idle:
            client.close()
        log = started.stop()
    refusals = [line for line in log.splitlines() if "Cannot accept connections" in line]
    assert 1 <= len(refusals) <= 2, log[-2000:]
    assert "Too many open files" in refusals[0]
    assert "Traceback" not in log and len(log) < 2000, log[-2000:]
