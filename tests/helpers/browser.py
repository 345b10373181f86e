"""Driving the page in a real browser for tests/serve/test_browser.py: the system Chromium,
which `make setup` installs with apt-get where it runs as root (Playwright's own browser
download cannot work offline), `convnet serve` on a free local port, and the page's gestures
and readings."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling out, which a closed
# network refuses; none of these change what the page does.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
START_TIMEOUT = 120
# How long an expectation waits, in milliseconds (Playwright's default is 5 s). An answer
# takes 20–60 ms of a quiet core, but the first (the explanations' warm-up) on a 2-core
# machine shared with other jobs took over 5 s, and an int8 page's first answer, beside the
# other pytest worker's multi-process tests (torchrun, servers), over 30 s.
ANSWER_WAIT_MS = 90_000


def playwright_or_skip():
    if not CHROMIUM.is_file():
        pytest.skip(
            f"Chromium is not installed at {CHROMIUM}: 'make setup' installs it with apt-get "
            "when it runs as root on Debian; elsewhere install the 'chromium' package."
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed: pip install -e '.[test]'.")
    expect.set_options(timeout=ANSWER_WAIT_MS)
    return sync_playwright


@contextlib.contextmanager
def serving(runs: dict[str, Path], runs_dir: Path, *options: str) -> Iterator[str]:
    """`convnet serve` of `runs` (lenet5 and mlp) with `options`, on a free port: its URL;
    stopped afterwards."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convnet",
            "serve",
            "--port",
            "0",
            "--run",
            str(runs["lenet5"]),
            "--run",
            str(runs["mlp"]),
            "--runs-dir",
            str(runs_dir),
            *options,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stderr], daemon=True
    ).start()
    deadline, seen = time.monotonic() + START_TIMEOUT, []
    url = None
    while url is None and time.monotonic() < deadline and process.poll() is None:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
        match = re.search(r"Open (http://127\.0\.0\.1:\d+/)", seen[-1])
        url = match.group(1) if match else None
    try:
        if url is None:
            pytest.fail("convnet serve did not start:\n" + "".join(seen[-20:]))
        yield url
    except AssertionError as error:  # what the server logged tells a failure's side
        with contextlib.suppress(queue.Empty):
            while True:
                seen.append(lines.get_nowait())
        raise AssertionError(
            f"{error}\nconvnet serve's log, last lines:\n{''.join(seen[-20:])}"
        ) from error
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def expect_answer(page) -> None:
    """Wait for the first answer (the CNN's top three); failing, say what the page knew: its
    error line and its request counters, which tell a request never sent, one still out,
    and one that failed apart."""
    from playwright.sync_api import expect

    try:
        expect(page.locator("#prediction-cnn .top li")).to_have_count(3)
    except AssertionError as error:
        seen = page.evaluate(
            """() => ({error: document.getElementById("error").hidden ? null
                        : document.getElementById("error").textContent,
                       busy: document.body.dataset.busy ?? null,
                       answers: document.body.dataset.predictions ?? null})"""
        )
        raise AssertionError(f"no answer on the page: {seen}") from error


def draw_seven(page) -> None:
    """Draw a 7 on the pad once the page has loaded its words and networks: before, the
    layout they change could move the pad from under the strokes (they then missed it on a
    loaded machine, and no request was ever sent)."""
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    box = page.locator("#pad").bounding_box()

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    page.mouse.move(*at(0.25, 0.22))
    page.mouse.down()
    page.mouse.move(*at(0.75, 0.22), steps=8)
    page.mouse.move(*at(0.45, 0.85), steps=10)
    page.mouse.up()


def predictions(page) -> dict:
    return page.evaluate(
        """() => Object.fromEntries(["cnn", "ordinary"].map((role) => {
            const block = document.getElementById(`prediction-${role}`);
            return [role, {view: block.dataset.view, probabilities: block.dataset.probabilities}];
        }))"""
    )


def explanation_centres(page) -> dict:
    """Each network's heat centre (row, column) as the explanation panel drew it."""
    return page.evaluate(
        """() => Object.fromEntries(["cnn", "ordinary"].map((role) =>
            [role, document.getElementById(`explain-${role}`).dataset.centre]))"""
    )


def hover_cell(page, selector: str, row: int, column: int) -> None:
    """Point at cell (row, column) of the map canvas `selector` (its grid from its size)."""
    canvas = page.locator(selector)
    width, height = canvas.evaluate("(c) => [c.width, c.height]")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    canvas.hover(
        position={
            "x": (column + 0.5) * box["width"] / width,
            "y": (row + 0.5) * box["height"] / height,
        }
    )


def wait_until_settled(page) -> None:
    page.wait_for_function(
        """() => (document.body.dataset.busy ?? "0") === "0" && !document.querySelector("#model-notes [data-i18n]")"""
    )
