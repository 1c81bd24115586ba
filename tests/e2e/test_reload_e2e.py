"""Hot reload by SIGHUP under continuous query load, and structured logs."""

import json
import signal
import threading

import dns.rcode
import pytest

from tests.e2e.harness import HTTPBackend, wait_until

pytestmark = pytest.mark.e2e


def render(servers, algorithm, extra_domain=False, fmt="json", broken=False):
    server_lines = "\n".join(f"      - {{address: {b.host}, port: {b.port}}}" for b in servers)
    text = f"""
dns:
  listen_address: "{{DNS}}"
logging: {{level: info, format: {fmt}}}
regions:
  - name: r1
    servers:
{server_lines}
    health_check: {{type: http, interval: 1s, timeout: 500ms}}
domains:
  - {{name: main.example.test, routing_algorithm: {algorithm}, regions: [r1]}}
"""
    if extra_domain:
        text += "  - {name: extra.example.test, regions: [r1]}\n"
    if broken:
        text += "  - {name: broken.example.test, regions: [nowhere]}\n"
    return text


class QueryLoop(threading.Thread):
    """Queries continuously; records every failure (timeout or non-NOERROR)."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node, self.stop_flag, self.sent, self.failures = node, threading.Event(), 0, []

    def run(self):
        while not self.stop_flag.is_set():
            try:
                reply = self.node.query("main.example.test", timeout=1.0)
                if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
                    self.failures.append(dns.rcode.to_text(reply.rcode()))
            except Exception as error:
                self.failures.append(repr(error))
            self.sent += 1


def test_twenty_sighup_reloads_without_a_failed_query(gslb_factory, backends):
    """Through 20 reloads (domain added/removed, server removed/added, algorithm changed) no query fails
    and each change takes effect."""
    servers = [backends(HTTPBackend(f"127.0.1.{10 + i}")) for i in range(3)]
    node = gslb_factory(render(servers, "round-robin"))
    loop = QueryLoop(node)
    loop.start()
    try:
        for i in range(20):
            step = i % 4
            if step == 0:
                node.write_config(render(servers, "round-robin", extra_domain=True))
                expect = lambda: node.address("extra.example.test") is not None  # noqa: E731
            elif step == 1:
                node.write_config(render(servers[:2], "round-robin", extra_domain=True))
                expect = lambda: {node.address("main.example.test") for _ in range(6)} == {  # noqa: E731
                    servers[0].host, servers[1].host}
            elif step == 2:
                node.write_config(render(servers[:2], "failover"))
                expect = lambda: (node.query("extra.example.test").rcode() == dns.rcode.REFUSED  # noqa: E731
                                  and {node.address("main.example.test") for _ in range(4)} == {servers[0].host})
            else:
                node.write_config(render(servers, "round-robin"))
                expect = lambda: {node.address("main.example.test") for _ in range(6)} == {  # noqa: E731
                    b.host for b in servers}
            node.signal(signal.SIGHUP)
            wait_until(expect, 5, interval=0.05, message=f"reload {i} (step {step}) took effect")
    finally:
        loop.stop_flag.set()
        loop.join(5)
    assert loop.sent > 100
    assert loop.failures == []
    reloads = [json.loads(line) for line in node.log().splitlines()
               if line.startswith("{") and '"event": "reload"' in line]
    assert sum(1 for r in reloads if r.get("result") == "success") == 20


def test_invalid_file_keeps_old_configuration(gslb_factory, backends):
    """An invalid file on reload: the old configuration keeps serving; the error is logged with file:line."""
    server = backends(HTTPBackend("127.0.1.30"))
    node = gslb_factory(render([server], "round-robin"))
    node.write_config(render([server], "round-robin", broken=True))
    node.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reload failed" in node.log(), 5)
    assert node.address("main.example.test") == server.host
    log = node.log()
    assert f"{node.config_path}:12: domains[1].regions[0]: unknown region" in log
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e["level"] == "error" and e.get("result") == "failure" for e in entries)


def test_json_log_lines_and_text_format(gslb_factory, backends):
    """json logs are one object per line with time, level, message; text format is plain lines;
    a server going down is logged with its reason."""
    server = backends(HTTPBackend("127.0.1.40"))
    node = gslb_factory(render([server], "round-robin"))
    server.status = 503
    wait_until(lambda: "is down" in node.log(), 8)
    for line in node.log().splitlines():
        entry = json.loads(line)
        assert {"time", "level", "message"} <= set(entry)
        assert entry["time"].endswith("Z")
    down = [json.loads(line) for line in node.log().splitlines() if "is down" in line]
    assert down[0]["level"] == "warn" and "HTTP 503" in down[0]["message"]

    other = backends(HTTPBackend("127.0.1.41"))
    text_node = gslb_factory(render([other], "round-robin", fmt="text"))
    wait_until(lambda: any("[info]" in line for line in text_node.log().splitlines()), 5,
               message="text log lines written")
    lines = text_node.log().splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    assert any("[info]" in line for line in lines)


def test_reload_of_huge_numbers_names_the_line(gslb_factory, backends):
    """A reload (SIGHUP or POST /config/reload) of a file with a 400-digit TTL or interval fails with
    file:line problems (no traceback, no line-less 422) and the old configuration keeps serving."""
    import http.client

    from tests.e2e.harness import free_port

    server = backends(HTTPBackend("127.0.1.50"))
    port = free_port()
    api = f"api: {{enabled: true, address: '127.0.0.1:{port}', tokens: [reload-token]}}\n"
    node = gslb_factory(render([server], "round-robin") + api)
    huge = "9" * 400
    bad = (render([server], "round-robin").replace("interval: 1s", f"interval: {huge}")
           + f"  - {{name: big.example.test, regions: [r1], ttl: {huge}}}\n" + api)
    node.write_config(bad)
    lines = bad.splitlines()
    interval_line = next(i for i, line in enumerate(lines, 1) if "interval:" in line)
    ttl_line = next(i for i, line in enumerate(lines, 1) if "ttl:" in line)
    expected = [
        f"{node.config_path}:{interval_line}: regions[0].health_check.interval: must be at most 24h"
        " (got a 400-digit number of seconds)",
        f"{node.config_path}:{ttl_line}: domains[1].ttl: must be between 0 and 2147483647"
        " (got a 400-digit number)",
    ]

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/api/v1/config/reload", body=b"",
                       headers={"Authorization": "Bearer reload-token"})
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 422, body
    assert body["problems"] == expected

    node.signal(signal.SIGHUP)
    wait_until(lambda: node.log().count("configuration reload failed") >= 4, 5)
    log = node.log()
    assert all(problem in log for problem in expected)
    assert "Traceback" not in log and "OverflowError" not in log
    assert node.address("main.example.test") == server.host
