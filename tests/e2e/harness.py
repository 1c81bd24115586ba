"""Real processes and sockets for end-to-end tests.

Everything here binds loopback addresses only, and every fixture stops what
it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List, Optional

import dns.message
import dns.query
import dns.rcode

REPO = Path(__file__).resolve().parents[2]


#: Every port :func:`free_port` handed out in this process: never handed out twice, so the ports a
#: test asks for one after the other (DNS, API, metrics on 127.0.0.1) are distinct.
_HANDED_OUT: set = set()
TEST_PORTS = range(21000, 32000)  # below the ephemeral range; see free_port
WORKER_SLICES = 4  # pytest-xdist workers with a slice of their own (2,750 ports each; more workers share)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host``, not handed out before in this process.

    Taken below the kernel's ephemeral range (32768-60999 by default), so no
    outgoing connection of another test can be given it after the check, and
    from a slice of :data:`TEST_PORTS` of its own per pytest-xdist worker, so
    two workers never hand out the same port.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = len(TEST_PORTS) // WORKER_SLICES
    start = TEST_PORTS.start + (index % WORKER_SLICES) * size
    for port in range(start, start + size):
        if port in _HANDED_OUT:
            continue
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind((host, port))
            udp.bind((host, port))
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port")


class HTTPBackend:
    """A real HTTP server on ``host:port`` whose /health status can be changed."""

    def __init__(self, host: str, port: int = 0) -> None:
        backend = self
        self.status = 200
        self.refuse_from: set = set()  # client addresses answered 503 (a partial outage)
        self.requests: List[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.requests.append({"path": self.path, "host": self.headers.get("Host"),
                                         "client": self.client_address[0]})
                status = 503 if self.client_address[0] in backend.refuse_from else backend.status
                body = f"{status} from {host}\n".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.host = host
        self._handler = Handler
        self._server: Optional[ThreadingHTTPServer] = None
        self.port = port
        self.start()

    def start(self) -> None:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll interval: stop() (shutdown) waits for the loop to notice, 0.5 s by default.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class TCPBackend:
    """A real TCP listener that accepts and closes connections."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host, self.port = host, port
        self._sock: Optional[socket.socket] = None
        self.start()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None


def twistd_command() -> List[str]:
    """``twistd`` from this interpreter's environment."""
    candidate = Path(sys.executable).with_name("twistd")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("twistd")
    if found:
        return [found]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class OpenGSLB:
    """The real ``twistd -n opengslb`` process on a config written to ``directory``."""

    def __init__(self, directory: Path, config_text: str, dns_host: str = "127.0.0.1",
                 dns_port: Optional[int] = None, extra_args: Optional[List[str]] = None,
                 nofile: Optional[int] = None) -> None:
        self.directory = directory
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) of the process, like `ulimit -n`
        self.dns_host = dns_host
        self.dns_port = dns_port or free_port(dns_host)
        self.config_path = directory / "config.yaml"
        self.write_config(config_text)
        self.log_path = directory / "opengslb.log"
        self.extra_args = extra_args or []
        self.process: Optional[subprocess.Popen] = None

    def write_config(self, config_text: str) -> None:
        text = textwrap.dedent(config_text).replace("{DNS}", f"{self.dns_host}:{self.dns_port}")
        text = text.replace("{DATA}", str(self.directory / "data"))
        if "\ncluster:" not in text:
            text += f"\ncluster:\n  raft: {{data_dir: {self.directory / 'data'}}}\n"
        self.config_path.write_text(text)
        os.chmod(self.config_path, 0o600)

    def start(self, wait: bool = True) -> "OpenGSLB":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            twistd_command() + ["-n", "--pidfile=", "opengslb", "--config", str(self.config_path)]
            + self.extra_args,
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(), cwd=str(self.directory),
            preexec_fn=None if self.nofile is None else self._limit_files)
        if wait:
            self.wait_answering()
        return self

    def _limit_files(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def wait_answering(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"opengslb exited {self.process.returncode}:\n{self.log()}")
            try:
                self.query("probe.invalid", timeout=0.3)
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"opengslb did not answer DNS in {timeout}s:\n{self.log()}")

    def query(self, name: str, rdtype: str = "A", tcp: bool = False, timeout: float = 2.0,
              **make_query_args: object) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, **make_query_args)
        if tcp:
            return dns.query.tcp(query, self.dns_host, port=self.dns_port, timeout=timeout)
        return dns.query.udp(query, self.dns_host, port=self.dns_port, timeout=timeout)

    def address(self, name: str, rdtype: str = "A") -> Optional[str]:
        """The single address answered for ``name``, or None for a non-NOERROR/empty answer."""
        reply = self.query(name, rdtype)
        if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
            return None
        return reply.answer[0][0].address

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int:
        return stop_nodes([self])[0]


def stop_nodes(nodes: "List[OpenGSLB]", signum: int = signal.SIGTERM, timeout: float = 10) -> List[int]:
    """Stop ``nodes`` together (``signum`` to all, then wait; see :func:`stop_processes`); exit codes."""
    running = [node for node in nodes if node.process is not None]
    codes = dict(zip(map(id, running), stop_processes([n.process for n in running], signum, timeout)))
    for node in running:
        node._log.close()
        node.process = None
    return [codes.get(id(node), 0) for node in nodes]


def stop_process(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 10) -> int:
    """Send ``signum`` (if still running), wait up to ``timeout``, then kill; the exit code."""
    return stop_processes([process], signum, timeout)[0]


def stop_processes(processes: "List[subprocess.Popen]", signum: int = signal.SIGTERM,
                   timeout: float = 10) -> List[int]:
    """Send ``signum`` to every one still running, wait up to ``timeout`` for all, kill the rest.

    Teardown stops everything at once: a test's processes exit in parallel, not one after another.
    """
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return [process.returncode for process in processes]


def hold_connections(port: int, count: int, sources: int = 250) -> List[socket.socket]:
    """``count`` idle TCP connections to 127.0.0.1:``port``, spread over the source addresses
    127.0.1.1 .. 127.0.1.<sources> (non-blocking connects: the server may close them at once).
    The caller closes them."""
    held = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((f"127.0.1.{1 + i % sources}", 0))
        sock.connect_ex(("127.0.0.1", port))
        held.append(sock)
    return held


#: Seconds a loaded two-core machine may add to a timing bound measured across processes
#: (the suite runs under pytest-xdist beside other work).  Exact timing belongs to the unit
#: tests on ``task.Clock``; an end-to-end bound says "promptly", with this much room.
LOAD_SLACK = 1.5


def wait_until(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{message} not reached within {timeout}s (last: {last!r})")
