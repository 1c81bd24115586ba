"""The built-in demo: a demo zone served on 127.0.0.1:1053 plus three local backends.

``opengslb demo`` runs the real product on this configuration, so a fresh
checkout answers ``dig @127.0.0.1 -p 1053 app.demo.test`` with no setup.
"""

from __future__ import annotations

from typing import Any, List

from twisted.application import service
from twisted.internet.interfaces import IListeningPort
from twisted.web import resource, server

DEMO_BACKENDS = [("127.0.0.11", 8081), ("127.0.0.12", 8081), ("127.0.0.13", 8081)]

DEMO_CONFIG = """\
dns:
  listen_address: "127.0.0.1:1053"
  default_ttl: 30
logging: {level: info, format: text}
api: {enabled: true, address: "127.0.0.1:8080"}   # the status page at http://127.0.0.1:8080/ (read-only)
regions:
  - name: demo
    servers:
      - {address: 127.0.0.11, port: 8081}
      - {address: 127.0.0.12, port: 8081}
      - {address: 127.0.0.13, port: 8081}
    health_check: {type: http, interval: 2s, timeout: 1s, path: /health,
                   failure_threshold: 2, success_threshold: 1}
domains:
  - {name: app.demo.test, routing_algorithm: round-robin, regions: [demo], ttl: 5}
  - {name: primary.demo.test, routing_algorithm: failover, regions: [demo], ttl: 5}
cluster:
  raft: {data_dir: "{DATA_DIR}"}
"""


def demo_config_text() -> str:
    """The demo configuration, with its runtime state in a fresh temporary directory."""
    import tempfile

    return DEMO_CONFIG.replace("{DATA_DIR}", tempfile.mkdtemp(prefix="opengslb-demo-"))


class _Health(resource.Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return f"ok from {self._name}\n".encode()


class DemoBackends(service.Service):
    """Three tiny HTTP servers answering 200 on every path."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._ports: List[IListeningPort] = []

    def startService(self) -> None:
        super().startService()
        for host, port in DEMO_BACKENDS:
            site = server.Site(_Health(f"{host}:{port}"))
            site.noisy = False
            self._ports.append(self._reactor.listenTCP(port, site, interface=host))

    def stopService(self) -> None:
        super().stopService()
        for port in self._ports:
            port.stopListening()
        self._ports = []
