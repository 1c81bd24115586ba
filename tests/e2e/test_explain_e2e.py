"""GET /api/v1/explain against the real `twistd opengslb` process (SPEC §4.1), on 127.0.88.0/24.

Real loopback HTTP backends, a geolocation domain with a topology, a
round-robin domain, real dnspython queries (with and without ECS, from the
client's own source address): what explain says is what DNS then answers —
addresses, rcode and ECS scope — before and after a backend goes down;
explaining moves no rotation; bad queries are 400; ``api.allowed_networks``
applies; ``opengslb ctl explain`` prints it.
"""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from opengslb.ctl import EXIT_OK, EXIT_USAGE, main
from tests.e2e.harness import REPO, HTTPBackend, child_env, free_port, wait_until
from tests.openapi_check import check_against_document

pytestmark = pytest.mark.e2e

HOST = "127.0.88.1"  # DNS and API listen here
ALLOWED = "127.0.88.200"  # an API client inside allowed_networks
OUTSIDE = "127.0.89.1"  # an API client outside them
LOCAL_CLIENT = "127.0.90.5"  # a DNS client the topology names (127.0.90.0/24 → ap)
CHECKS = ("{type: http, interval: 300ms, timeout: 250ms, path: /health, failure_threshold: 1, "
          "success_threshold: 1}")


def config(api_port: int, eu: List[HTTPBackend], us: HTTPBackend, ap: HTTPBackend) -> str:
    def servers(backends: List[HTTPBackend]) -> str:
        return ", ".join(f"{{address: {b.host}, port: {b.port}}}" for b in backends)

    return f"""
dns:
  listen_address: "{{DNS}}"
  default_ttl: 20
  zones: [{{name: explain.test, nameservers: [{{name: ns1.explain.test, address: 127.0.88.53}}]}}]
logging: {{level: info, format: json}}
api:
  enabled: true
  address: "{HOST}:{api_port}"
  allowed_networks: ["127.0.0.1/32", "127.0.88.0/24"]
regions:
  - {{name: eu, servers: [{servers(eu)}], health_check: {CHECKS}}}
  - {{name: us, servers: [{servers([us])}], health_check: {CHECKS}}}
  - {{name: ap, servers: [{servers([ap])}], health_check: {CHECKS}}}
domains:
  - name: geo.explain.test
    routing_algorithm: geolocation
    regions: [eu, us, ap]
    topology:
      - {{networks: [10.0.0.0/8], regions: [us, eu]}}
      - {{networks: [10.1.0.0/16], regions: [ap, eu]}}
      - {{networks: [127.0.90.0/24], regions: [ap]}}
  - {{name: rr.explain.test, routing_algorithm: round-robin, regions: [eu]}}
"""


class Node:
    """The running process: its API (from a chosen source address) and its DNS."""

    def __init__(self, process: Any, api_port: int) -> None:
        self.process = process
        self.api_port = api_port

    def get(self, query: str, source: str = ALLOWED) -> Tuple[int, Any]:
        """GET /api/v1/explain?``query`` from ``source``: (status, JSON checked against the document)."""
        conn = http.client.HTTPConnection(HOST, self.api_port, timeout=5, source_address=(source, 0))
        try:
            conn.request("GET", f"/api/v1/explain?{query}")
            response = conn.getresponse()
            status, raw = response.status, response.read()
            assert response.getheader("Content-Type") == "application/json"
        finally:
            conn.close()
        body = json.loads(raw)
        check_against_document("GET", "/api/v1/explain", status, body)
        return status, body

    def explain(self, name: str, client: str, subnet: Optional[int] = None, rtype: str = "A") -> Dict[str, Any]:
        query = {"name": name, "type": rtype, "client": client}
        if subnet is not None:
            query["subnet"] = str(subnet)
        status, body = self.get(urllib.parse.urlencode(query))
        assert status == 200, body
        return body

    def ask(self, name: str, subnet: Optional[Tuple[str, int]] = None, source: str = "127.0.0.1",
            rtype: str = "A") -> dns.message.Message:
        options = [dns.edns.ECSOption(subnet[0], subnet[1])] if subnet is not None else []
        query = dns.message.make_query(name, rtype, use_edns=0, options=options)
        return dns.query.udp(query, HOST, port=self.process.dns_port, timeout=2.0, source=source)


def answer(reply: dns.message.Message) -> List[str]:
    return [item.address for rrset in reply.answer for item in rrset]


def scope(reply: dns.message.Message) -> Optional[int]:
    return next((o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)), None)


def same(told: Dict[str, Any], reply: dns.message.Message) -> bool:
    return (told["answer"], told["rcode"], told["ecs_scope"]) == (
        answer(reply), dns.rcode.to_text(reply.rcode()), scope(reply))


@pytest.fixture
def world(gslb_factory, backends):
    eu = [backends(HTTPBackend("127.0.88.11")), backends(HTTPBackend("127.0.88.12"))]
    us, ap = backends(HTTPBackend("127.0.88.21")), backends(HTTPBackend("127.0.88.31"))
    api_port = free_port(HOST)
    process = gslb_factory(config(api_port, eu, us, ap), dns_host=HOST)
    node = Node(process, api_port)

    def ready() -> bool:
        try:
            conn = http.client.HTTPConnection(HOST, api_port, timeout=2)
            conn.request("GET", "/api/v1/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_until(ready, 10, message=f"ready\n{process.log()}")
    return node, eu, us, ap


def test_explain_is_what_dns_answers_with_and_without_subnet_and_after_a_failure(world):
    """ECS clients, a source-address client and an unmatched network: explain, then a real query,
    agree on answer, rcode and scope; a backend going down shows its reason and the answer moves."""
    node, eu, us, ap = world
    told = node.explain("geo.explain.test", "10.1.2.3", 24)
    assert (told["client_network"], told["answer"], told["ecs_scope"], told["matched"]["networks"]) == (
        "10.1.2.0/24", ["127.0.88.31"], 16, ["10.1.0.0/16"])
    assert same(told, node.ask("geo.explain.test", ("10.1.2.3", 24)))

    told = node.explain("geo.explain.test", "10.200.0.1", 16)
    assert (told["answer"], told["ecs_scope"]) == (["127.0.88.21"], 9)
    assert same(told, node.ask("geo.explain.test", ("10.200.0.1", 16)))

    told = node.explain("geo.explain.test", LOCAL_CLIENT)  # no subnet: the source address, no ECS
    assert (told["client_network"], told["answer"], told["ecs_scope"]) == (
        f"{LOCAL_CLIENT}/32", ["127.0.88.31"], None)
    reply = node.ask("geo.explain.test", source=LOCAL_CLIENT)
    assert same(told, reply) and scope(reply) is None

    ap.status = 503
    wait_until(lambda: node.explain("geo.explain.test", "10.1.2.3", 24)["answer"] != ["127.0.88.31"], 10,
               message="ap down: explain moves to the rule's next region")
    told = node.explain("geo.explain.test", "10.1.2.3", 24)
    candidates = {c["address"]: c for c in told["candidates"]}
    assert candidates["127.0.88.31"]["healthy"] is False
    assert candidates["127.0.88.31"]["excluded_because"] == (
        "unhealthy (own check: unhealthy; last error: HTTP 503)")
    assert candidates["127.0.88.21"]["excluded_because"] == "not in the chosen region (eu)"
    assert told["answer"][0] in ("127.0.88.11", "127.0.88.12") and told["ecs_scope"] == 16
    assert same(told, node.ask("geo.explain.test", ("10.1.2.3", 24)))

    told = node.explain("geo.explain.test", LOCAL_CLIENT)  # ap first, then the domain's order: eu
    assert told["matched"]["order"] == ["ap", "eu", "us"] and told["answer"][0] in ("127.0.88.11", "127.0.88.12")
    assert same(told, node.ask("geo.explain.test", source=LOCAL_CLIENT))

    ap.status = 200
    wait_until(lambda: node.explain("geo.explain.test", "10.1.2.3", 24)["answer"] == ["127.0.88.31"], 10,
               message="ap back")
    assert answer(node.ask("geo.explain.test", ("10.1.2.3", 24))) == ["127.0.88.31"]


def test_explaining_does_not_advance_round_robin(world):
    """Explain twice: the same prediction; the next DNS answer is it, and the one after is the next."""
    node = world[0]
    first = node.explain("rr.explain.test", "192.0.2.1")
    assert node.explain("rr.explain.test", "192.0.2.1")["answer"] == first["answer"]
    assert answer(node.ask("rr.explain.test")) == first["answer"]
    second = node.explain("rr.explain.test", "192.0.2.1")
    assert second["answer"] != first["answer"]
    assert node.explain("rr.explain.test", "192.0.2.1")["answer"] == second["answer"]
    assert answer(node.ask("rr.explain.test")) == second["answer"]
    assert sorted(first["answer"] + second["answer"]) == ["127.0.88.11", "127.0.88.12"]


def test_names_outside_and_inside_the_zone_get_the_dns_rcode(world):
    node = world[0]
    for name, rcode in (("www.elsewhere.test", "REFUSED"), ("nope.explain.test", "NXDOMAIN")):
        told = node.explain(name, "192.0.2.1")
        assert told["rcode"] == rcode and same(told, node.ask(name))
    told = node.explain("rr.explain.test", "192.0.2.1", rtype="AAAA")  # no IPv6 server: NODATA
    assert (told["rcode"], told["answer"]) == ("NOERROR", [])
    assert same(told, node.ask("rr.explain.test", rtype="AAAA"))


def test_bad_queries_are_400_and_allowed_networks_apply(world):
    node = world[0]
    bad = ["type=A&client=192.0.2.1", "name=a..b&type=A&client=192.0.2.1",
           "name=rr.explain.test&type=TXT&client=192.0.2.1", "name=rr.explain.test&type=A&client=300.1.1.1",
           "name=rr.explain.test&type=A&client=192.0.2.1&subnet=33",
           "name=rr.explain.test&type=A&client=2001:db8::1&subnet=129",
           "name=rr.explain.test&type=A&client=192.0.2.1&extra=1"]
    for query in bad:
        status, body = node.get(query)
        assert status == 400 and body["code"] == 400 and body["error"], (query, body)
    status, body = node.get("name=rr.explain.test&type=A&client=192.0.2.1", source=OUTSIDE)
    assert (status, body) == (403, {"error": f"source address {OUTSIDE} is not in api.allowed_networks",
                                    "code": 403})


def test_ctl_explain_prints_the_explanation(world):
    """`opengslb ctl explain` (in process and as the command) shows the answer and every candidate."""
    node = world[0]
    environ = {"OPENGSLB_API": f"http://{HOST}:{node.api_port}"}
    out, err = io.StringIO(), io.StringIO()
    code = main(["explain", "geo.explain.test", "--client", "10.1.2.3", "--subnet", "24"], out, err, environ)
    assert code == EXIT_OK, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == "geo.explain.test A for 10.1.2.3 (client network 10.1.2.0/24)"
    assert lines[1] == "answer     127.0.88.31  [NOERROR, ECS scope /16]"
    assert "topology rule 1: networks 10.1.0.0/16 → regions ap, eu" in lines[3]
    assert any(line.startswith("ap ") and "answered" in line for line in lines)
    assert main(["explain", "geo.explain.test"], io.StringIO(), io.StringIO(), environ) == EXIT_USAGE
    done = subprocess.run([sys.executable, "-m", "opengslb", "ctl", "--json", "explain", "rr.explain.test",
                           "--client", "192.0.2.1"], capture_output=True, text=True, timeout=30,
                          env={**child_env(), **environ}, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["domain"] == "rr.explain.test"
