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
from typing import Dict, Optional, Tuple

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
    """Answers ``/`` and ``/ui/<file>``; :meth:`render` returns None for any other path."""

    def __init__(self) -> None:
        self._files = load_files()

    def render(self, request: Request) -> Optional[bytes]:
        """The body for a UI path (headers set), or None when ``request`` is not for the UI."""
        segments = [segment for segment in (request.postpath or [])]
        if segments in ([], [b""]):
            name = ""
        elif len(segments) == 2 and segments[0] == b"ui":
            name = segments[1].decode("utf-8", "replace")
        else:
            return None
        found = self._files.get(name)
        if found is None or name == "index.html":
            return None
        content_type, body = found
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        for header, value in SECURITY_HEADERS.items():
            request.setHeader(header.encode("ascii"), value.encode("ascii"))
        if request.method == b"HEAD":
            request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
            return b""
        return body
