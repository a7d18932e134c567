"""`/api-docs`: the interactive OpenAPI UI, with its assets served by berth (works offline)."""

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.errors import NotFound

router = APIRouter(include_in_schema=False)
_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}


@lru_cache(maxsize=1)
def _asset_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@router.get("/api-docs")
def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="berth API",
        swagger_js_url="/api-docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/api-docs/assets/swagger-ui.css",
        swagger_favicon_url="/api-docs/assets/favicon-32x32.png",
    )


@router.get("/api-docs/assets/{name}")
def api_docs_asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise NotFound(f"no asset {name}")
    return FileResponse(_asset_dir() / name, media_type=_ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400"})
