"""The status page's files and /api/v1/events, served by the API resource (in memory)."""

from __future__ import annotations

from treq.testing import StubTreq

from opengslb.api.ui import SECURITY_HEADERS
from tests.unit.test_api import FromPeer, World, call, fired


def get(world: World, path: str, peer: str = "127.0.0.1"):
    stub = StubTreq(FromPeer(world.api.resource(), peer))
    d = stub.request("GET", "http://api.test" + path)
    stub.flush()
    response = fired(d)
    return response, fired(response.content())


def test_root_is_the_page_with_a_strict_content_security_policy():
    """GET / is the HTML page; its script and style come from /ui/; CSP forbids anything else."""
    response, body = get(World(), "/")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type") == ["text/html; charset=utf-8"]
    assert b'<script src="/ui/app.js"' in body and b"<title>OpenGSLB status</title>" in body
    csp = response.headers.getRawHeaders("Content-Security-Policy")[0]
    assert csp == SECURITY_HEADERS["Content-Security-Policy"] and "'unsafe-inline'" not in csp
    for asset, kind in (("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css")):
        response, body = get(World(), asset)
        assert response.code == 200 and body
        assert response.headers.getRawHeaders("Content-Type")[0].startswith(kind)


def test_unknown_ui_files_are_json_404_and_the_page_obeys_allowed_networks():
    """/ui/nope is the API's 404; a source outside allowed_networks gets 403 for the page too."""
    response, body = get(World(), "/ui/nope.js")
    assert response.code == 404 and b'"code": 404' in body
    response, body = get(World(), "/ui/index.html")
    assert response.code == 404
    response, body = get(World(), "/", peer="192.0.2.7")
    assert response.code == 403 and b"allowed_networks" in body


def test_events_endpoint_lists_recent_notable_events_newest_first():
    """Log events with a notable kind appear in /api/v1/events with an RFC 3339 time."""
    world = World()
    world.api.events({"event": "server_down", "log_format": "server {s} is down", "s": "192.0.2.1:80",
                      "log_time": 1_700_000_000.0})
    world.api.events({"event": "failover", "log_format": "failover", "log_time": 1_700_000_060.0})
    result = call(world, "GET", "/api/v1/events")
    assert result.status == 200
    assert [e["kind"] for e in result.body["events"]] == ["failover", "server_down"]
    assert result.body["events"][1] == {"time": "2023-11-14T22:13:20Z", "kind": "server_down",
                                        "level": "info", "message": "server 192.0.2.1:80 is down"}
