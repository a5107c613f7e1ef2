"""The REST API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), offline.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet they
are blank. Here the pages load them from the server, at :data:`ASSETS`: the minified scripts,
stylesheet and favicon that the ``fastapi-offline`` package ships (Swagger UI 5, ReDoc 2, both
MIT), served from its installed files. The pages are FastAPI's own
(:func:`~fastapi.openapi.docs.get_swagger_ui_html`, :func:`~fastapi.openapi.docs.get_redoc_html`)
with those addresses, as FastAPI documents for self-hosted docs; nothing else on them reaches
out (no Google fonts, no Swagger validator badge). They sit behind the same authentication as the
rest of the REST API, as FastAPI's did.
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "add_docs"]

ASSETS: Final = "/docs/static"
"""Where the pages' scripts, stylesheet and favicon are served."""
_PACKAGE: Final = ("fastapi_offline", "static")
"""The installed package folder holding them."""


def add_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the two pages and their assets on ``app``, created with ``docs_url=None`` and
    ``redoc_url=None`` (else FastAPI's CDN pages would answer first)."""
    app.mount(ASSETS, StaticFiles(packages=[_PACKAGE]), name="docs-assets")
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            # the validator badge is an image from validator.swagger.io
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    if oauth2_redirect_url:

        @app.get(oauth2_redirect_url, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
