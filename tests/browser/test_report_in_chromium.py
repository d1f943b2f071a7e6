"""The portfolio report in a real browser: headless Chromium opens the file offline, draws every chart, prints.

Debian's `chromium` package is the browser (`.ci/run` installs it when missing and it runs as
root); Playwright drives it over the DevTools protocol. Without either the tests skip, saying so.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from connector.cli.demo import run_demo

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed: `make .venv/.installed-dev` (the dev extra) installs it",
)

SECTIONS = ("book", "movement", "concentration", "owners", "limits", "stress", "model_health")
# What a printed page lays out in: A4's 210 mm less the report's 12 mm margins, at 96 px per inch.
A4_WIDTH_PX = round((210 - 2 * 12) / 25.4 * 96)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "Debian's chromium package is not installed: `apt-get install chromium` "
        "(.ci/run installs it when run as root); the report was NOT checked in a browser"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module", params=["salesforce", "zoho"])
def demo_report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report `crm-risk demo` writes after its two syncs, for each sandbox."""
    folder = tmp_path_factory.mktemp(f"demo-{request.param}")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            patch.delenv(name, raising=False)
        run_demo(Console(file=io.StringIO(), width=120), crm=request.param, keep=str(folder))
    report = folder / request.param / "report.html"
    assert report.is_file(), "the demo wrote no report"
    return report


class Opened:
    """A page that loaded the report with the network off, recording what it tried and said."""

    def __init__(self, browser: Any, report: Path, **context: Any) -> None:
        self.url = report.resolve().as_uri()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(offline=True, **context)
        self.page = self.context.new_page()
        self.page.route("**/*", self._only_the_file)
        self.page.on(
            "console",
            lambda message: (
                self.errors.append(f"console.{message.type}: {message.text}")
                if message.type == "error"
                else None
            ),
        )
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.goto(self.url, wait_until="load")

    def _only_the_file(self, route: Any) -> None:
        if route.request.url == self.url:
            route.continue_()
        else:
            self.requests.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.context.close()


CHARTS_BY_SECTION = """() => [...document.querySelectorAll('main > section')].map(section => ({
  id: section.id,
  charts: [...section.querySelectorAll('svg.chart')].map(svg => {
    const box = svg.getBoundingClientRect();
    const marks = [...svg.querySelectorAll('rect, path, polyline, circle, line')]
      .filter(m => { const b = m.getBoundingClientRect(); return b.width > 0 || b.height > 0; });
    const ids = (svg.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean);
    const named = ids.map(id => (document.getElementById(id) || {}).textContent || '');
    return {id: svg.id, width: box.width, height: box.height, marks: marks.length,
            role: svg.getAttribute('role'), names: named};
  }),
}))"""


def test_report_opens_offline_and_draws_every_sections_chart(
    browser: Any, demo_report: Path, tmp_path: Path
) -> None:
    opened = Opened(browser, demo_report, viewport={"width": 1280, "height": 900})
    try:
        sections = opened.page.evaluate(CHARTS_BY_SECTION)
        shot = tmp_path / "report.png"
        opened.page.screenshot(path=str(shot), full_page=True)
        overflow = opened.page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth"
        )
    finally:
        opened.close()
    assert opened.requests == [], "the report tried to reach the network"
    assert opened.errors == []
    assert [s["id"] for s in sections] == list(SECTIONS)
    for section in sections:
        assert section["charts"], f"section {section['id']} drew no chart"
        for chart in section["charts"]:
            where = f"{section['id']}/{chart['id']}"
            assert chart["width"] > 100 and chart["height"] > 50, where
            assert chart["marks"] >= 3, f"{where} drew nothing"
            # A text alternative: the accessible name is the title, the description its figures.
            assert chart["role"] == "img", where
            assert len(chart["names"]) == 2 and all(n.strip() for n in chart["names"]), where
    assert overflow <= 0, "the page is wider than a laptop window"
    assert shot.stat().st_size > 50_000


def test_report_prints_on_a4_with_nothing_cut_off(browser: Any, demo_report: Path) -> None:
    opened = Opened(browser, demo_report, viewport={"width": A4_WIDTH_PX, "height": 1123})
    try:
        opened.page.emulate_media(media="print")
        layout = opened.page.evaluate(
            """() => ({
              width: document.documentElement.scrollWidth,
              wide: [...document.querySelectorAll('main svg, main table, main figure')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .map(e => e.id || e.querySelector('caption')?.textContent || e.tagName),
              breaks: [...document.querySelectorAll('main > section')]
                .map(s => getComputedStyle(s).breakBefore),
              nav: getComputedStyle(document.querySelector('nav')).display,
            })"""
        )
        pdf = opened.page.pdf(format="A4", print_background=True)
    finally:
        opened.close()
    assert opened.requests == [] and opened.errors == []
    assert layout["wide"] == [], "cut off on paper"
    assert layout["width"] <= A4_WIDTH_PX
    # Each section after the first starts a page; the on-screen navigation is not printed.
    assert layout["breaks"][1:] == ["page"] * (len(SECTIONS) - 1)
    assert layout["nav"] == "none"
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages >= len(SECTIONS)
