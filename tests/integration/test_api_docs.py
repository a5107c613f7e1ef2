"""``/docs`` and ``/redoc`` work without internet: every script, stylesheet and icon they load
comes from the server itself (shipped in the wheel), and in a real browser with every other host
blocked, Swagger UI and ReDoc render the API's operations."""

from __future__ import annotations

import os
import shutil
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import pytest

from tests.fixtures.optional import absent, needs
from tests.fixtures.server import ShipwayServer, module_server

if TYPE_CHECKING:
    from playwright.sync_api import Route

PAGES = ("/docs", "/redoc")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
"""The one address ReDoc's bundle asks for by itself (its "API docs by Redocly" attribution);
offline the image hides itself."""


server = module_server("docs")


class _Assets(HTMLParser):
    """The addresses a page loads: scripts' ``src``, links' ``href`` (stylesheet, icon)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", PAGES)
def test_a_docs_page_loads_its_assets_from_the_server(server: ShipwayServer, page: str) -> None:
    with server.client() as client:
        response = client.get(page)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert "http://" not in response.text, response.text
        assert "https://" not in response.text, response.text
        parser = _Assets()
        parser.feed(response.text)
        assets = {urljoin(server.url + page, url) for url in parser.urls}
        assert {urlsplit(url).path.rsplit(".", 1)[-1] for url in assets} >= {"js", "png"}
        for url in sorted(assets):
            assert urlsplit(url).netloc == urlsplit(server.url).netloc, url
            asset = client.get(url)
            assert asset.status_code == 200, url
            suffix = "." + urlsplit(url).path.rsplit(".", 1)[-1]
            assert asset.headers["content-type"].split(";")[0] in CONTENT_TYPES[suffix], url
            assert len(asset.content) > 1000, url
        assert client.get("/openapi.json").status_code == 200


def test_swagger_ui_and_redoc_render_the_operations_offline(server: ShipwayServer) -> None:
    sync_api = needs("playwright.sync_api", extra="browser")
    browser_path = _chromium()
    requested: list[str] = []
    blocked: list[str] = []

    def only_the_server(route: Route) -> None:
        url = route.request.url
        requested.append(url)
        if urlsplit(url).netloc == urlsplit(server.url).netloc:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path)
        try:
            page = browser.new_page()
            page.route("**/*", only_the_server)
            page.goto(server.url + "/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert {"/api/models", "/api/endpoints/{name}", "/api/metrics"} <= {
                p.replace("\u200b", "") for p in paths
            }, paths
            assert blocked == [], blocked
            page.goto(server.url + "/redoc")
            heading = page.locator("h2", has_text="Query a metric (like GetMetricStatistics)")
            heading.wait_for(timeout=30_000)
            assert page.locator("h2").count() > 20
            assert set(blocked) <= {REDOCLY_LOGO}, blocked
        finally:
            browser.close()
    assert any(url.endswith("/openapi.json") for url in requested), requested


def _chromium() -> str:
    """A Chromium for playwright: $SHIPWAY_TEST_CHROMIUM, or Debian's chromium-headless-shell or
    chromium (playwright's own browser download is not needed)."""
    for candidate in (
        os.environ.get("SHIPWAY_TEST_CHROMIUM"),
        shutil.which("chromium-headless-shell"),
        shutil.which("chromium"),
    ):
        if candidate:
            return candidate
    absent("no Chromium (apt-get install chromium-headless-shell, or SHIPWAY_TEST_CHROMIUM)")
