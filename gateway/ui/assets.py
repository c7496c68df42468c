"""The UI's own files (style, script, icon), read once from the package and served from memory. Each link
carries a digest of the file, so a browser may keep it for a day and still never runs a stale one."""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from aiohttp import web

from gateway.ui.security import PAGE_HEADERS

STATIC = Path(__file__).parent / "static"
CACHED = {"Cache-Control": "public, max-age=86400"}


class Asset:
    __slots__ = ("body", "content_type", "version")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.version = hashlib.sha256(body).hexdigest()[:12]


class Assets:
    def __init__(self, folder: Path = STATIC) -> None:
        self.files: dict[str, Asset] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                self.files[path.name] = Asset(path.read_bytes(), kind)

    def link(self, home: str, name: str) -> str:
        """The file's address from a page whose way back to the UI's root is `home`."""
        return f"{home}static/{name}?v={self.files[name].version}"

    def response(self, name: str) -> web.Response:
        found = self.files.get(name)
        if found is None:
            raise web.HTTPNotFound()
        charset = "utf-8" if found.content_type.startswith(("text/", "application/javascript", "image/svg")) else None
        return web.Response(body=found.body, content_type=found.content_type, charset=charset,
                            headers={**PAGE_HEADERS, **CACHED})
