"""What every section of `convnet report lecture` is made of: the Section record, the
report's words in one language (`Words`), the accuracy gate and the HTML helpers.

Every sentence is a template of the message catalog (`lecture.*` keys in
convnet/locales/<lang>.json) filled with measured values. A sentence that quantifies
(every, most, some, none) is chosen by `Words.by_count` from the numbers it speaks of, one
template per quantity, so a sentence cannot say "every" beside a table where one row
disagrees. Verdicts stay English identifiers (the page translates them when it renders),
so the logic is the same in every language.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from convnet import i18n

# The clean accuracy on MNIST's test digits that every network in a comparison must reach
# before a claim that compares them is judged: an undertrained network teaches the opposite
# lesson (a lenet5 trained for 16 steps, at 18% accuracy, made the ordinary network look
# the robust one). Each of lenet5, mlp and the pooling variants passes it after the
# report's default brief training (docs/lecture.md, "The report").
ACCURACY_FLOOR = 0.97
NOT_JUDGED = "not judged"
# Each verdict identifier and its catalog key (lecture.verdict.<key>).
VERDICTS = {
    "supported": "supported",
    "not supported": "not_supported",
    "depends": "depends",
    "not measured here": "not_measured",
    NOT_JUDGED: "not_judged",
}
QUANTITIES = ("all", "most", "some", "none")


@dataclass
class Section:
    number: int
    claim: str
    command: str
    measured: str  # HTML
    verdict: str  # one of VERDICTS' identifiers
    why: str  # HTML
    figure: str | None = None
    extra: str = ""  # HTML
    lang: str = "en"


def quantity(count: int, total: int) -> str:
    """Which of QUANTITIES `count` of `total` is: all, most (more than half), some, none."""
    if count <= 0:
        return "none"
    if count >= total:
        return "all"
    return "most" if 2 * count > total else "some"


class Words:
    """The report's text in one language: `lecture.*` messages of the catalog, whose integer
    values are written with the language's digit grouping (pass an index as a str), and
    numbers and percentages as the language writes them."""

    def __init__(self, lang: str):
        self.lang = lang
        self.decimal = i18n.text(lang, "number.decimal")

    def __call__(self, key: str, **values: object) -> str:
        written = {
            name: self.n(value) if isinstance(value, int) and not isinstance(value, bool) else value
            for name, value in values.items()
        }
        return i18n.text(self.lang, f"lecture.{key}", **written)

    def by_count(self, key: str, count: int, total: int, **values: object) -> str:
        """The template `key.<quantity>` for `count` of `total` (`quantity`), filled."""
        return self(f"{key}.{quantity(count, total)}", count=count, total=total, **values)

    def n(self, value: float, digits: int = 0) -> str:
        return i18n.number(value, self.lang, digits)

    def pct(self, fraction: float, digits: int = 1) -> str:
        return i18n.percent(fraction, self.lang, digits)

    def points(self, fraction: float, digits: int = 1) -> str:
        """A difference of two accuracies (0.021) in percentage points ("2.1 points")."""
        return self("points", value=self.n(100 * fraction, digits))

    def span(self, values: Iterable[float], digits: int = 1) -> str:
        """Several accuracies as mean (min–max): "98.7% (98.5–98.9%)"."""
        values = list(values)
        mean = sum(values) / len(values)
        if len(values) == 1:
            return self.pct(mean, digits)
        low, high = (self.n(100 * value, digits) for value in (min(values), max(values)))
        return self("span", mean=self.pct(mean, digits), low=low, high=high)

    def range_of(self, values: Iterable[float], write: Callable[[float], str]) -> str:
        """The lowest and highest of `values` as `write` writes them ("62–784"), or one of
        them when both read the same."""
        values = list(values)
        low, high = write(min(values)), write(max(values))
        return low if low == high else self("range", low=low, high=high)

    def listing(self, items: Iterable[str]) -> str:
        """Items joined as the language lists them ("a, b and c")."""
        items = list(items)
        if len(items) <= 1:
            return "".join(items)
        return self("and", first=self("comma").join(items[:-1]), last=items[-1])

    def verdict(self, verdict: str) -> str:
        return self(f"verdict.{VERDICTS.get(verdict, verdict)}")

    def headers(self, *keys: str) -> list[str]:
        return [self(f"table.{key}") for key in keys]


def code(command: str) -> str:
    return f"<code>{html.escape(command)}</code>"


def table(header: list[str], rows: list[list[object]], code_columns: tuple[int, ...] = ()) -> str:
    """An HTML table, every cell escaped; the cells of `code_columns` set as code."""
    cells = [
        "".join(
            f"<td>{code(str(v)) if i in code_columns else html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        for row in rows
    ]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>{''.join(f'<tr>{row}</tr>' for row in cells)}</table>"


def variant_label(variant, w: Words) -> str:
    """A variant's label in w's language ("lenet5 + augmentation" by its kind, and its seed
    when it is not the first)."""
    label = (
        variant.model
        if variant.kind == "plain"
        else w(f"variant.{variant.kind}", model=variant.model)
    )
    return label if variant.first_seed else w("variant.seed", label=label, seed=str(variant.seed))


def label_of(result, label: str, w: Words) -> str:
    """The variant called `label` (the experiment's English label) in w's language."""
    variant = next((v for v in result.variants if v.label == label), None)
    return label if variant is None else variant_label(variant, w)


def short_of(result, labels: Iterable[str]) -> list[tuple[str, float]]:
    """The networks of `labels` below ACCURACY_FLOOR, with their clean accuracy."""
    accuracies = [(label, result.clean_accuracy(label)) for label in labels]
    return [(label, value) for label, value in accuracies if value < ACCURACY_FLOOR]


def short_text(result, short: list[tuple[str, float]], w: Words) -> str:
    return w.listing(
        f"{html.escape(label_of(result, label, w))} {w.pct(value)}" for label, value in short
    )


def gate(section: Section, result, labels: Iterable[str], retrain: str) -> Section:
    """The section as it is when every network in `labels` reached ACCURACY_FLOOR; else
    its verdict withheld, saying which networks fell short and the command (`retrain`,
    HTML) that judges it."""
    short = short_of(result, labels)
    if not short:
        return section
    w = Words(section.lang)
    section.verdict = NOT_JUDGED
    section.why = w(
        "gate",
        short=short_text(result, short, w),
        floor=w.pct(ACCURACY_FLOOR),
        command=retrain,
    )
    return section


def combined_verdict(results: list[bool]) -> str:
    """supported when every result holds, not supported when none does, else depends."""
    return "supported" if all(results) else "not supported" if not any(results) else "depends"
