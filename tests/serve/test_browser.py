"""The page in a real browser: `convnet serve` on a free local port, Debian's Chromium driven
headless by Playwright. Draw a stroke, see predictions and feature maps, shift the digit and
see both networks answer again; the page in Korean (from the browser's language and from the
switch) with no English left but names and units; screenshots go to test-artifacts/.
The browser and the page's gestures: tests/helpers/browser.py.
"""

from __future__ import annotations

import json
import shutil

import pytest

from convnet.engine import int8
from convnet.i18n import text
from tests.helpers.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    draw_seven,
    expect_answer,
    explanation_centres,
    hover_cell,
    playwright_or_skip,
    predictions,
    serving,
    wait_until_settled,
)
from tests.helpers.serve import quick_runs


@pytest.fixture(scope="module")
def server_url(mnist_dir, tmp_path_factory):
    """`convnet serve` given two quickly trained (undertrained) runs. The runs directory is
    left empty: nothing else is found or trained."""
    playwright_or_skip()
    runs = quick_runs(tmp_path_factory)  # trains them unless already there
    with serving(runs, tmp_path_factory.mktemp("no-runs")) as url:
        yield url


DISTINCT_COLOURS = """(selector) => {
    const colours = new Set();
    for (const canvas of document.querySelectorAll(selector)) {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < data.length; i += 4) colours.add(data[i] * 65536 + data[i + 1] * 256 + data[i + 2]);
    }
    return colours.size;
}"""
SEEN_PIXELS = """() => {
    const canvas = document.getElementById("seen");
    return Array.from(canvas.getContext("2d").getImageData(0, 0, 28, 28).data).join(",");
}"""


def test_draw_see_and_shift(server_url):
    from playwright.sync_api import expect

    sync_playwright = playwright_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on(
                "response",
                lambda r: (
                    problems.append(f"{r.status} {r.url}: {r.text()}") if r.status >= 400 else None
                ),
            )
            # the networks' notes held back: until they arrive the pad takes no strokes
            gate: dict = {"open": False, "held": []}

            def hold(route) -> None:
                if gate["open"]:
                    route.continue_()
                else:
                    gate["held"].append(route)

            page.route("**/api/models*", hold)
            page.goto(server_url)
            expect(page.locator("#pad")).to_have_css("pointer-events", "none")
            gate["open"] = True
            for route in gate["held"]:
                route.continue_()
            expect(page.locator("#model-notes")).to_contain_text("lenet5")
            expect(page.locator("#model-notes")).to_contain_text("mlp")
            expect(page.locator("#pad")).to_have_css("pointer-events", "auto")

            draw_seven(page)
            for role in ("cnn", "ordinary"):
                expect(page.locator(f"#prediction-{role} .top li")).to_have_count(3)
            for layer, count in {"c1": 6, "s2": 6, "c3": 16, "s4": 16, "c5": 1}.items():
                expect(page.locator(f".maps-{layer} canvas")).to_have_count(count)
            page.wait_for_selector("body[data-busy='0']")
            assert page.evaluate(DISTINCT_COLOURS, ".maps-c1 canvas") > 10  # maps, not blanks
            assert page.evaluate(DISTINCT_COLOURS, "#filter-picker canvas") > 10
            before, seen_before = predictions(page), page.evaluate(SEEN_PIXELS)
            assert all(json.loads(before[role]["view"])["shift_x"] == 0 for role in before)
            # where each network looked: the digit with its heat over it, a centre of mass
            for role in ("cnn", "ordinary"):
                expect(page.locator(f"#explain-{role}")).to_have_attribute("data-shape", "28x28")
                expect(page.locator(f"#explain-{role} .centre")).not_to_be_empty()
                assert page.evaluate(DISTINCT_COLOURS, f"#explain-{role} canvas") > 10
            centres_before = explanation_centres(page)

            for _ in range(3):
                page.click("#shift-right")
            expect(page.locator("#shift-x-value")).to_have_text(
                text("en", "page.unit.px", value="+3")
            )
            page.wait_for_function(
                """() => ["cnn", "ordinary"].every((role) =>
                    JSON.parse(document.getElementById(`prediction-${role}`).dataset.view).shift_x === 3)
                    && document.body.dataset.busy === "0" """
            )
            after = predictions(page)
            for role in ("cnn", "ordinary"):
                assert after[role]["probabilities"] != before[role]["probabilities"], role
            assert page.evaluate(SEEN_PIXELS) != seen_before  # the digit the networks saw moved
            assert explanation_centres(page)["cnn"] != centres_before["cnn"]  # and so did the heat
            page.locator("#explain-card").screenshot(path=str(ARTIFACTS / "serve-explain.png"))

            page.click("#filter-picker button:nth-child(2)")
            page.locator("#position").fill("300")
            cell = text("en", "page.sharing.cell", row="10", column="20")
            expect(page.locator("#position-label")).to_have_text(cell)
            server_cell = text(
                "en", "page.sharing.server", map="2", row="10", column="20", value=""
            )
            expect(page.locator("#sharing-equation")).to_contain_text(server_cell.strip())
            expect(page.locator("#sharing-equation")).to_contain_text(
                text("en", "page.sharing.same")
            )
            page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / "serve-page-phone.png"), full_page=True)
            assert overflow <= 0, f"the page is {overflow} px wider than a phone screen"
            assert problems == []
        finally:
            browser.close()


def output_side(size: int, kernel: int, padding: int, stride: int) -> int:
    return (
        max((size + 2 * padding - kernel) // stride + 1, 0) if size + 2 * padding >= kernel else 0
    )


def test_inside_the_cnn(server_url):
    """Every part beyond the feature maps: the receptive field of a pointed cell on every
    layer, the pooling window and its winner, a C3 cell summed over its S2 maps, F6 and the
    output probabilities, the padding and stride explorer, the colour legend; each
    recomputed in the page agrees with the server ("the same")."""
    from playwright.sync_api import expect

    sync_playwright = playwright_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(server_url)
            draw_seven(page)
            expect_answer(page)
            wait_until_settled(page)
            same = text("en", "page.sharing.same")
            assert page.evaluate(DISTINCT_COLOURS, ".legend canvas") > 100

            # receptive fields: C1 5×5 at its cell, C3 14×14 with step 2, C5 the whole input
            fields = {
                (".maps-c1 canvas:nth-child(2)", 0, 0): "c1,1,0,0 0,0,4,4",
                (".maps-c3 canvas:nth-child(6)", 2, 7): "c3,5,2,7 4,14,17,27",
                (".maps-s4 canvas:nth-child(1)", 4, 4): "s4,0,4,4 16,16,31,31",
                (".maps-c5 canvas", 1, 0): "c5,12,0,0 0,0,31,31",
            }
            for (selector, row, column), expected in fields.items():
                hover_cell(page, selector, row, column)
                field = page.locator("#field")
                cell, pixels = expected.split()
                expect(field).to_have_attribute("data-cell", cell)
                expect(field).to_have_attribute("data-field", pixels)
            page.locator("#maps-card").screenshot(path=str(ARTIFACTS / "serve-maps.png"))

            # the C3 panel follows a pointed C3 cell; its sum agrees with the server's
            hover_cell(page, ".maps-c3 canvas:nth-child(4)", 5, 3)
            assert [page.input_value(f"#c3-{name}") for name in ("map", "row", "column")] == [
                "4",
                "5",
                "3",
            ]
            expect(page.locator("#c3-equation")).to_contain_text(same)
            expect(page.locator("#c3-terms figure")).to_have_count(6)  # lenet5: all six S2 maps
            expect(page.locator("#c3-table td.picked")).to_have_count(6)

            # a pooling cell picked by hand: its window, one winner, the server's value
            page.select_option("#pooling-layer", "s4")
            for name, value in (("map", "3"), ("row", "1"), ("column", "2")):
                page.fill(f"#pooling-{name}", value)
                page.dispatch_event(f"#pooling-{name}", "change")
            expect(page.locator("#pooling-equation")).to_contain_text(
                text(
                    "en",
                    "page.pooling.server",
                    layer="S4",
                    number="3",
                    row="1",
                    column="2",
                    value="",
                ).strip()
            )
            expect(page.locator("#pooling-equation")).to_contain_text(same)
            expect(page.locator("#pooling-window td")).to_have_count(4)
            expect(page.locator("#pooling-window td.winner")).to_have_count(1)

            # F6 and the output: ten rows, the best one the CNN's answer, probabilities add to 1
            rows = page.locator("#output-table tbody tr")
            expect(rows).to_have_count(10)
            answer = predictions(page)["cnn"]["probabilities"].split(",")
            best = max(range(10), key=lambda digit: float(answer[digit]))
            expect(page.locator("#output-table tr.best td").first).to_have_text(str(best))
            expect(page.locator("#softmax")).to_contain_text("1.000")
            expect(page.locator("#softmax")).to_contain_text(same)  # recomputed from the scores
            expect(page.locator("#head-precision")).to_be_hidden()
            expect(page.locator("#prediction-cnn .badge.precision")).to_be_hidden()
            assert page.evaluate(DISTINCT_COLOURS, "#f6-map") > 3

            # padding and stride: the formula's side for settings and presets
            settings = [(32, 5, 0, 1), (28, 5, 2, 1), (7, 3, 0, 3), (5, 7, 0, 1), (7, 3, 1, 2)]
            for size, kernel, padding, stride in settings:
                for name, value in zip(
                    ("size", "kernel", "padding", "stride"),
                    (size, kernel, padding, stride),
                    strict=True,
                ):
                    page.fill(f"#explorer-{name}", str(value))
                side = output_side(size, kernel, padding, stride)
                expect(page.locator("#explorer-formula")).to_have_attribute("data-side", str(side))
                left_over = (size + 2 * padding - kernel) % stride if side else 0
                note = page.locator("#explorer-note")
                if left_over:
                    expect(note).to_contain_text(
                        text("en", "page.explorer.left_over", count=str(left_over))
                    )
                if not side:
                    expect(note).to_contain_text(
                        text(
                            "en",
                            "page.explorer.too_large",
                            kernel=str(kernel),
                            padded=str(size + 2 * padding),
                        )
                    )
            page.click(
                f"#explorer-presets button:has-text('{text('en', 'page.explorer.preset.s2')}')"
            )
            side = str(output_side(28, 2, 0, 2))
            expect(page.locator("#explorer-formula")).to_have_attribute("data-side", side)
            page.locator("#explorer-card").screenshot(path=str(ARTIFACTS / "serve-explorer.png"))
            for card in ("pooling-card", "c3-card", "head-card"):
                page.locator(f"#{card}").screenshot(path=str(ARTIFACTS / f"serve-{card}.png"))
            assert problems == []
        finally:
            browser.close()


# Latin-letter words the Korean page may show, each for a reason; anything else is English
# left untranslated. The served runs' names are allowed as well (they name directories).
ALLOWED_LATIN = {
    "lenet5",
    "mlp",
    "LeNet-5",  # model names
    "px",  # a unit
    "C1",
    "S2",
    "C3",
    "S4",
    "C5",
    "F6",  # LeNet-5's layer names, as the paper and courses write them
    "ReLU",  # the activation function's name, in the weight-sharing sum
    "Grad-CAM",  # the explanation method's name (Selvaraju et al.), as Korean courses write it
    "MNIST",  # the data set's name
    "LeCun",
    "Bottou",
    "Bengio",
    "Haffner",  # the authors cited in the footer
    "convnet",
    "serve",  # the program and its command (`convnet serve`)
    "augmentation-switch",
    "max-training-minutes",
    "train",
    "resume",  # command-line options and commands, typed as they are
    "e",
    "i",
    "j",
    "k",
    "n",
    "p",
    "s",  # the variables of the softmax and output-size formulas
    "English",  # the switch names each language in that language
}
LATIN_WORDS = r"""() => document.body.innerText.match(/[A-Za-z][A-Za-z0-9-]*/g) || []"""
HANGUL_BESIDE_SWITCH = r"""() => /[\uac00-\ud7a3]/.test(
    document.body.innerText.replace(document.getElementById("languages").innerText, ""))"""


def latin_words_left(page, allowed: set[str]) -> list[str]:
    return sorted(set(page.evaluate(LATIN_WORDS)) - allowed)


def test_korean_page_from_the_browser_language_and_the_switch(server_url):
    from playwright.sync_api import expect

    sync_playwright = playwright_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            # A Korean browser: the page opens in Korean.
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ko-KR")
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(server_url)
            models = page.evaluate("() => fetch('/api/models?lang=ko').then((r) => r.json())")
            runs = {model["run"] for model in models["models"]}
            expect(page.locator("h1")).to_have_text(text("ko", "page.heading"))
            assert page.evaluate("document.documentElement.lang") == "ko"
            draw_seven(page)
            expect_answer(page)
            wait_until_settled(page)
            page.click("#sweep")
            expect(page.locator("#sweep-figure")).to_be_visible(timeout=60_000)
            undertrained = [model for model in models["models"] if model["undertrained"]]
            assert undertrained, "the quick runs should be undertrained"
            expect(page.locator("#model-notes li.warning")).to_have_count(len(undertrained))
            for model in undertrained:
                expect(page.locator("#model-notes")).to_contain_text(model["warning"])
                expect(
                    page.locator(f"#prediction-{model['role']} .badge.undertrained")
                ).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "serve-page-ko.png"), full_page=True)
            page.locator("#explain-card").screenshot(path=str(ARTIFACTS / "serve-explain-ko.png"))
            assert latin_words_left(page, ALLOWED_LATIN | runs) == []
            before = predictions(page), page.evaluate(SEEN_PIXELS)

            # The server's refusals in Korean too: a reading whose body is lost on the way.
            page.route("**/api/predict*", lambda route: route.continue_(post_data=b""))
            page.click("#shift-right")
            refusal = text("ko", "server.error.body_empty")
            expect(page.locator("#error")).to_have_text(
                text("ko", "page.error.server", message=refusal)
            )
            page.unroute("**/api/predict*")
            page.click("#shift-left")
            expect(page.locator("#error")).to_be_hidden()
            wait_until_settled(page)

            # The switch: all English, the drawing and its readings kept, no reload.
            page.click("#languages button[lang='en']")
            expect(page.locator("h1")).to_have_text(text("en", "page.heading"))
            assert page.evaluate("document.documentElement.lang") == "en"
            english = page.evaluate("() => fetch('/api/models?lang=en').then((r) => r.json())")
            for model in english["models"]:
                expect(page.locator("#model-notes")).to_contain_text(model["origin"])
            expect(page.locator("#prediction-ordinary h3")).to_contain_text(
                text("en", "page.role.ordinary")
            )
            assert not page.evaluate(HANGUL_BESIDE_SWITCH), "Korean left on the English page"
            assert (predictions(page), page.evaluate(SEEN_PIXELS)) == before
            page.screenshot(path=str(ARTIFACTS / "serve-page-en-switched.png"), full_page=True)
            page.reload()  # the choice is remembered
            expect(page.locator("h1")).to_have_text(text("en", "page.heading"))
            context.close()

            # An English browser: English first, then Korean from the switch, remembered.
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
            page = context.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(server_url)
            expect(page.locator("h1")).to_have_text(text("en", "page.heading"))
            page.click("#languages button[lang='ko']")
            expect(page.locator("h1")).to_have_text(text("ko", "page.heading"))
            expect(page.locator("#model-notes li.warning")).to_have_count(len(undertrained))
            page.reload()
            expect(page.locator("h1")).to_have_text(text("ko", "page.heading"))
            wait_until_settled(page)
            assert latin_words_left(page, ALLOWED_LATIN | runs) == []
            context.close()
            assert problems == []
        finally:
            browser.close()


@pytest.mark.skipif(not int8.cpu_has_vnni(), reason="this CPU has no VNNI")
def test_the_page_in_int8_badges_the_answers_and_checks_fp32(mnist_dir, tmp_path_factory):
    """`serve --precision int8`: each answer has its int8 badge and says whether fp32 agrees;
    the output table is fp32's, and the page's recomputations from the fp32 numbers (the C1
    cell, the top probability from the scores) still agree with the server's."""
    from playwright.sync_api import expect

    sync_playwright = playwright_or_skip()
    folder = tmp_path_factory.mktemp("int8-page")  # quantizing writes beside the runs: copies
    runs = {
        model: shutil.copytree(path, folder / path.name)
        for model, path in quick_runs(tmp_path_factory).items()
    }
    options = ("--precision", "int8", "--calibration-images", "16")
    with serving(runs, folder, *options) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(url)
            draw_seven(page)
            expect_answer(page)
            wait_until_settled(page)
            same = text("en", "page.sharing.same")
            for role in ("cnn", "ordinary"):
                block = page.locator(f"#prediction-{role}")
                expect(block.locator(".badge.precision")).to_have_text("int8")
                expect(block).to_have_attribute("data-precision", "int8")
                fp32_answer = block.get_attribute("data-fp32-top")
                assert fp32_answer, "no fp32 answer beside the int8 one"
                expect(block.locator(".precision-note")).to_contain_text(f"fp32 says {fp32_answer}")
            expect(page.locator("#head-precision")).to_be_visible()
            fp32_top = page.locator("#prediction-cnn").get_attribute("data-fp32-top")
            expect(page.locator("#output-table tr.best td").first).to_have_text(fp32_top)
            expect(page.locator("#softmax")).to_contain_text(same)
            expect(page.locator("#sharing-equation")).to_contain_text(same)
            page.screenshot(path=str(ARTIFACTS / "serve-page-int8.png"), full_page=True)
            assert problems == []
        finally:
            browser.close()
