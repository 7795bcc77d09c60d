"""The web dashboard's built files (`web/dist`), served at `/` when `WEB_DIST_DIR` is set.

Hashed bundles under `/assets/` are cached for a year; `index.html` is revalidated on every
load so a new build is picked up at once. The dashboard routes in the browser, so a page path
such as `/signals` that names no file answers with `index.html` — but only for paths outside
the engine's own prefixes, so an unknown `/api/...` still gets the JSON 404. A strict content
security policy keeps the page to its own scripts and its own engine.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, Response

from app.core.errors import NotFound

# Paths that belong to the engine, never to the dashboard.
ENGINE_PREFIXES = (
    "api",
    "ws",
    "docs",
    "redoc",
    "openapi.json",
    "health",
    "ready",
    "metrics",
    ".well-known",
)
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # React's style attributes
        "img-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _inside(root: Path, relative: str) -> Path | None:
    """The file `relative` names under `root`, or None (missing, a folder, or outside root)."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def mount_dashboard(app: FastAPI, root: Path) -> None:
    """Serve the dashboard built into `root` (which holds `index.html`); call after every
    other router is included, since its catch-all route must come last."""
    root = root.resolve()
    index = root / "index.html"
    router = APIRouter(include_in_schema=False)

    def page() -> Response:
        return FileResponse(index, headers={**_PAGE_HEADERS, "Cache-Control": "no-cache"})

    @router.get("/")
    async def dashboard() -> Response:
        return page()

    @router.get("/{path:path}")
    async def dashboard_file(path: str, request: Request) -> Response:
        first = path.split("/", 1)[0]
        if first in ENGINE_PREFIXES:
            raise NotFound(f"no route {request.url.path}", field="path")
        found = _inside(root, path)
        if found is not None:
            immutable = path.startswith("assets/")
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return FileResponse(
                found, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
            )
        if "." in path.rsplit("/", 1)[-1]:  # a missing file, not a page of the dashboard
            raise NotFound(f"no file {request.url.path}", field="path")
        return page()

    app.include_router(router)
