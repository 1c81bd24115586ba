"""The status page's static files (``opengslb/web``), served by the API listener.

``GET /`` is the page, ``GET /ui/<file>`` its script and style sheet.  They
are read from the package once, at start, and served with a strict
Content-Security-Policy (everything from this origin, nothing inline, no
frames) so a page that shows backend-supplied text (error messages, reasons)
cannot be made to run script.  The page itself only reads the API; writes
go through the API with the token the operator types into the tab.
"""

from __future__ import annotations

from importlib import resources
from typing import Dict, Optional, Sequence, Tuple

from twisted.web.server import Request

#: Served file name → (content type, bytes); "" is the page at "/".
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def load_files() -> Dict[str, Tuple[str, bytes]]:
    """The page and its assets from the installed package."""
    files: Dict[str, Tuple[str, bytes]] = {}
    web = resources.files("opengslb") / "web"
    for entry in web.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (_TYPES[suffix], entry.read_bytes())
    files[""] = files["index.html"]
    return files


class StatusPage:
    """The page at ``/`` and its files at ``/ui/<file>``."""

    def __init__(self) -> None:
        self._files = load_files()

    def file_for(self, postpath: Sequence[bytes]) -> Optional[Tuple[str, bytes]]:
        """``(content type, body)`` for a UI path, or None when the path is not the UI's."""
        if list(postpath) in ([], [b""]):
            return self._files[""]
        if len(postpath) == 2 and postpath[0] == b"ui" and postpath[1] != b"index.html":
            return self._files.get(postpath[1].decode("utf-8", "replace"))
        return None

    def render(self, request: Request, found: Tuple[str, bytes]) -> bytes:
        """Set the headers of ``found`` (from :meth:`file_for`) on ``request``; the body to send."""
        content_type, body = found
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        for header, value in SECURITY_HEADERS.items():
            request.setHeader(header.encode("ascii"), value.encode("ascii"))
        if request.method == b"HEAD":
            request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
            return b""
        return body
