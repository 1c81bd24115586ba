"""The wire-level fast path answers exactly as the full twisted.names path does.

Equivalence is checked the way it is deployed: a responder that tries the fast
path first and falls back to the full path (both over one view) must produce
the same bytes, and the same counters, as the full path alone over a twin view
built from the same configuration and random seed, so both routing pickers
make the same choices.
"""

import dataclasses
import random
from typing import Callable, Optional, Tuple

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rdataclass
import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opengslb.config.model import (
    Config,
    DNSConfig,
    DomainConfig,
    ListenAddress,
    NameserverConfig,
    RegionConfig,
    ServerConfig,
    SOAConfig,
    ZoneConfig,
)
from opengslb.dns import fastpath
from opengslb.dns.fastpath import FastPath, wire_name
from opengslb.dns.server import DNSResponder
from opengslb.dns.view import AnsweringView, ServedState, build_view
from opengslb.routing import Candidate
from opengslb.stats import QueryStats

ZONE = "gslb.example.com"


def bench_config(return_last_healthy: bool = False) -> Config:
    """Every algorithm, mixed families, unequal weights, a zone and a standalone apex."""
    zone = ZoneConfig(
        name=ZONE,
        soa=SOAConfig(mname=f"ns1.{ZONE}", rname="hostmaster.example.com", minimum=30),
        nameservers=(NameserverConfig(f"ns1.{ZONE}", "192.0.2.53"),),
    )
    regions = (
        RegionConfig("east", (ServerConfig("192.0.2.10", 80), ServerConfig("192.0.2.11", 8080),
                              ServerConfig("2001:db8::10", 80))),
        RegionConfig("west", (ServerConfig("198.51.100.10", 80, weight=300),
                              ServerConfig("198.51.100.11", 80, weight=0),
                              ServerConfig("2001:db8::11", 443, weight=50))),
        RegionConfig("v6only", (ServerConfig("2001:db8::20", 80),)),
    )
    domains = (
        DomainConfig(f"rr.{ZONE}", ("east",), "round-robin", ttl=15),
        DomainConfig(f"smooth.{ZONE}", ("east", "west"), "round-robin"),
        DomainConfig(f"w.{ZONE}", ("west", "east"), "weighted", ttl=300),
        DomainConfig(f"fo.{ZONE}", ("east", "west"), "failover", ttl=5),
        DomainConfig(f"deep.a.b.{ZONE}", ("west",), "weighted"),
        DomainConfig(f"v6.{ZONE}", ("v6only",), "round-robin"),
        DomainConfig("standalone.example.org", ("west",), "round-robin", ttl=0),
    )
    return Config(dns=DNSConfig(listen_address=ListenAddress("127.0.0.1", 53), default_ttl=60,
                                return_last_healthy=return_last_healthy, zones=(zone,)),
                  regions=regions, domains=domains)


CONFIG = bench_config()
DOMAINS = [d.name for d in CONFIG.domains]
OTHER_NAMES = [ZONE, f"nope.{ZONE}", f"ns1.{ZONE}", f"a.b.{ZONE}", "example.org", "outside.test",
               f"x.rr.{ZONE}"]
ADDRESSES = [s.address for r in CONFIG.regions for s in r.servers]


def make_view(config: Config, down: frozenset, seed: int) -> AnsweringView:
    def state(region: str, server: ServerConfig) -> ServedState:
        return ServedState(healthy=server.address not in down, weight=float(server.weight),
                           last_healthy=1.0)

    return build_view(config, state, random.Random(seed))


Respond = Callable[[bytes], Optional[bytes]]


def twin_responders(config: Config = CONFIG, down: frozenset = frozenset(), seed: int = 0
                    ) -> Tuple[Respond, Respond, QueryStats, QueryStats, FastPath]:
    """(fast-then-full, full only, their stats, the fast path) over twin views."""
    fast_view, full_view = make_view(config, down, seed), make_view(config, down, seed)
    fast_stats, full_stats = QueryStats(), QueryStats()
    fast = FastPath.from_view(fast_view, fast_stats)
    fallback = DNSResponder(lambda: fast_view, fast_stats)
    reference = DNSResponder(lambda: full_view, full_stats)

    def combined(data: bytes) -> Optional[bytes]:
        reply = fast.respond(data, True)
        return reply if reply is not None else fallback.respond(data, 512)

    return combined, (lambda data: reference.respond(data, 512)), fast_stats, full_stats, fast


def random_case(name: str, mask: int) -> str:
    return "".join(c.upper() if c.isalpha() and (mask >> (i % 60)) & 1 else c
                   for i, c in enumerate(name))


@st.composite
def queries(draw: st.DrawFn) -> Tuple[bytes, dict]:
    """A query (wire bytes) and the parameters it was built from."""
    name = draw(st.sampled_from(DOMAINS + OTHER_NAMES))
    spelled = random_case(name, draw(st.integers(0, 2 ** 60 - 1))) + draw(st.sampled_from(["", "."]))
    rdtype = draw(st.sampled_from(["A", "A", "AAAA", "AAAA", "MX", "TXT", "SOA", "NS", "ANY", "CNAME"]))
    rdclass = draw(st.sampled_from(["IN"] * 6 + ["CH", "ANY"]))
    edns = draw(st.sampled_from(["none", "plain", "plain", "do", "cookie", "options", "version1"]))
    kwargs: dict = {"use_edns": -1}
    if edns != "none":
        options = {  # a client cookie (RFC 7873); cookie + padding (RFC 7830) + client subnet
            "cookie": [dns.edns.GenericOption(10, b"\x01" * 8)],
            "options": [dns.edns.GenericOption(10, b"\x02" * 24), dns.edns.GenericOption(12, b""),
                        dns.edns.GenericOption(8, b"\x00\x01\x18\x00\xc0\x00\x02")],
        }
        kwargs = {"use_edns": 1 if edns == "version1" else 0,
                  "payload": draw(st.sampled_from([512, 1232, 4096, 65535])),
                  "want_dnssec": edns == "do", "options": options.get(edns)}
    query = dns.message.make_query(spelled, rdtype, rdclass, **kwargs)
    query.id = draw(st.integers(0, 0xFFFF))
    query.flags = 0
    if draw(st.booleans()):
        query.flags |= dns.flags.RD
    query.flags |= draw(st.sampled_from([0, 0, dns.flags.CD, dns.flags.AD, dns.flags.TC]))
    params = {"name": name, "rdtype": rdtype, "rdclass": rdclass, "edns": edns}
    return query.to_wire(), params


def fast_path_should_answer(params: dict, down: frozenset) -> bool:
    """Whether a query built from ``params`` is one the fast path must take itself."""
    if (params["name"] not in DOMAINS or params["rdtype"] not in ("A", "AAAA")
            or params["rdclass"] != "IN" or params["edns"] == "version1"):
        return False
    domain = next(d for d in CONFIG.domains if d.name == params["name"])
    want_v6 = params["rdtype"] == "AAAA"
    return any((":" in s.address) == want_v6 and s.address not in down and s.weight > 0
               for region in domain.regions for s in CONFIG.region(region).servers)


def assert_same_message(got: bytes, want: bytes) -> None:
    """Both decode (dnspython) to the same message: rcode, flags, sections, TTLs, EDNS."""
    a, b = dns.message.from_wire(got), dns.message.from_wire(want)
    assert a == b  # id, flags, question, answer, authority, additional
    assert (a.rcode(), a.flags, a.edns, a.payload, a.ednsflags, a.options) == \
           (b.rcode(), b.flags, b.edns, b.payload, b.ednsflags, b.options)
    for section in ("question", "answer", "authority", "additional"):
        assert [(r.name.to_text(), r.ttl) for r in getattr(a, section)] == \
               [(r.name.to_text(), r.ttl) for r in getattr(b, section)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32), down=st.frozensets(st.sampled_from(ADDRESSES)),
       stale=st.booleans(), batch=st.lists(queries(), min_size=1, max_size=25))
def test_fast_path_answers_exactly_as_the_full_path(seed, down, stale, batch):
    """Fast-then-full gives the full path's bytes and counters, and the fast path takes
    every plain A/AAAA query with a healthy candidate."""
    config = bench_config(return_last_healthy=stale)
    combined, reference, fast_stats, full_stats, fast = twin_responders(config, down, seed)
    for wire, params in batch:
        taken = fast.respond(wire, True)
        assert (taken is not None) == fast_path_should_answer(params, down), params
        got = taken if taken is not None else combined(wire)
        want = reference(wire)
        assert got == want
        assert_same_message(got, want)
    assert fast_stats.queries == full_stats.queries
    assert fast_stats.routing == full_stats.routing


def outcome(respond: Respond, data: bytes) -> Tuple[str, object]:
    """("reply", bytes-or-None), or ("raised", exception type) when the responder raised.

    Only the full path can raise (the datagram protocol answers SERVFAIL
    then); comparing outcomes keeps this test about the fast path.
    """
    try:
        return "reply", respond(data)
    except Exception as error:  # noqa: BLE001 - any failure must match
        return "raised", type(error)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2 ** 32), query=queries(),
       edits=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 100), tail=st.binary(max_size=4))
def test_mutated_queries_answer_as_the_full_path(seed, query, edits, cut, tail):
    """Corrupted, truncated or extended queries: whatever the fast path answers, the full
    path answers with the same bytes."""
    wire = bytearray(query[0])
    for position, value in edits:
        if position < len(wire):
            wire[position] = value
    data = bytes(wire[:max(cut, 0)] if cut < len(wire) else wire) + tail
    combined, reference, fast_stats, full_stats, _ = twin_responders(seed=seed)
    assert outcome(combined, data) == outcome(reference, data)
    assert fast_stats.queries == full_stats.queries
    assert fast_stats.routing == full_stats.routing


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data):
    """Arbitrary bytes never raise in FastPath.respond."""
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), QueryStats())
    reply = fast.respond(data, True)
    assert reply is None or isinstance(reply, bytes)


@given(data=st.binary(min_size=12, max_size=40))
def test_arbitrary_bytes_after_a_known_question_never_raise(data):
    """Arbitrary headers and tails around a prepared question never raise."""
    question = wire_name(f"rr.{ZONE}") + b"\x00\x01\x00\x01"
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), QueryStats())
    fast.respond(data[:12] + question + data[12:], True)


def query(name: str, rdtype: str = "A", **kwargs: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()


def test_plain_query_is_byte_identical_to_the_full_path():
    """A plain A query with EDNS answers the full path's exact bytes, OPT echoed with 1232."""
    combined, reference, _, _, fast = twin_responders()
    data = query("Rr.GSLB.example.COM", use_edns=0, payload=4096)
    reply = fast.respond(data, True)
    assert reply == reference(data)
    message = dns.message.from_wire(reply)
    assert message.payload == 1232 and message.edns == 0
    assert message.question[0].name.to_text() == "Rr.GSLB.example.COM."
    assert message.flags & dns.flags.AA and message.flags & dns.flags.RD


def test_tcp_answers_like_udp():
    """Over TCP (udp=False) the same bytes are produced."""
    _, reference, _, _, fast = twin_responders()
    data = query(f"fo.{ZONE}")
    assert fast.respond(data, False) == reference(data)


def test_counts_like_the_full_path():
    """Each fast answer counts one query (NOERROR) and one routing decision."""
    stats = QueryStats()
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), stats)
    for _ in range(3):
        fast.respond(query(f"fo.{ZONE}"), True)
    assert stats.queries == {(f"fo.{ZONE}", "A", "NOERROR"): 3}
    assert stats.routing == {(f"fo.{ZONE}", "failover", "192.0.2.10:80"): 3}


def test_falls_back_for_what_it_does_not_prepare():
    """NODATA, unknown names, other types/classes, malformed options, EDNS version 1,
    several questions and non-QUERY opcodes all go to the full path."""
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), QueryStats())
    two_questions = dns.message.make_query(f"rr.{ZONE}", "A")
    two_questions.question.append(dns.message.make_query(f"fo.{ZONE}", "A").question[0])
    notify = dns.message.make_query(f"rr.{ZONE}", "A")
    notify.set_opcode(dns.opcode.NOTIFY)
    response = dns.message.make_response(dns.message.make_query(f"rr.{ZONE}", "A"))
    for data in (query(f"v6.{ZONE}", "A"), query(f"nope.{ZONE}"),
                 query(f"rr.{ZONE}", "MX"), query(f"rr.{ZONE}", "A", rdclass="CH"),
                 query(f"rr.{ZONE}", use_edns=0, options=[dns.edns.GenericOption(10, b"x" * 8)])[:-1],
                 query(f"rr.{ZONE}", use_edns=0) + b"\x00\x0a\x00\x08",  # data after rdlength 0
                 query(f"rr.{ZONE}", use_edns=1), two_questions.to_wire(), notify.to_wire(),
                 response.to_wire(), query(f"rr.{ZONE}") + b"\x00", b"", b"\x00" * 11):
        assert fast.respond(data, True) is None


def test_all_down_falls_back_so_the_full_path_decides():
    """With every candidate down the fast path declines (SERVFAIL/stale are the full path's)."""
    fast = FastPath.from_view(make_view(CONFIG, frozenset(ADDRESSES), 0), QueryStats())
    assert fast.respond(query(f"rr.{ZONE}"), True) is None


def test_rebuild_follows_health():
    """A rebuilt fast path stops answering a server that went down."""
    stats = QueryStats()
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), stats)
    fast.rebuild(make_view(CONFIG, frozenset({"192.0.2.10"}), 0))
    for _ in range(5):
        reply = dns.message.from_wire(fast.respond(query(f"fo.{ZONE}"), True))
        assert reply.answer[0][0].address == "192.0.2.11"


def test_health_rebuild_keeps_encoded_records_and_swaps_the_picker():
    """A rebuild where only health changed reuses each domain's records but uses the
    new view's picker."""
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), QueryStats())
    before = fast._domains[f"fo.{ZONE}"]
    fast.rebuild(make_view(CONFIG, frozenset({"192.0.2.10"}), 0))
    assert fast._domains[f"fo.{ZONE}"] is before
    reply = dns.message.from_wire(fast.respond(query(f"fo.{ZONE}"), True))
    assert reply.answer[0][0].address == "192.0.2.11"


def test_rebuild_with_a_new_ttl_reencodes():
    """A reload that changes a domain's TTL answers with the new TTL."""
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), QueryStats())
    changed = dataclasses.replace(CONFIG, domains=tuple(
        dataclasses.replace(d, ttl=99) if d.name == f"fo.{ZONE}" else d for d in CONFIG.domains))
    fast.rebuild(make_view(changed, frozenset(), 0))
    reply = dns.message.from_wire(fast.respond(query(f"fo.{ZONE}"), True))
    assert reply.answer[0].ttl == 99


def test_rebuild_drops_removed_domains():
    """A domain removed by a reload is no longer answered by the fast path."""
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), QueryStats())
    fewer = dataclasses.replace(CONFIG, domains=tuple(d for d in CONFIG.domains
                                                      if d.name != f"fo.{ZONE}"))
    fast.rebuild(make_view(fewer, frozenset(), 0))
    assert fast.respond(query(f"fo.{ZONE}"), True) is None


def test_rebuild_is_proportional_to_domains():
    """Every (domain, family with servers) is prepared; names sharing addresses share records."""
    regions = tuple(RegionConfig(f"r{i}", (ServerConfig(f"10.0.{i // 250}.{i % 250 + 1}"),
                                           ServerConfig(f"2001:db8::{i:x}")))
                    for i in range(500))
    domains = tuple(DomainConfig(f"d{i}.example.net", (f"r{i}",)) for i in range(500))
    config = Config(regions=regions, domains=domains)
    fast = FastPath.from_view(make_view(config, frozenset(), 0), QueryStats())
    assert len(fast) == 1000
    reply = dns.message.from_wire(fast.respond(query("D42.example.net", "AAAA"), True))
    assert reply.answer[0][0].address == "2001:db8::2a"


def test_wire_name_rejects_names_it_cannot_prepare():
    """Non-ASCII, empty or over-long labels and over-long names are not prepared."""
    assert wire_name("a.example") == b"\x01a\x07example\x00"
    for bad in ("caf\u00e9.example", "a..example", "x" * 64 + ".example", ".".join(["x" * 60] * 5)):
        assert wire_name(bad) is None


def test_a_candidate_the_view_did_not_prepare_is_encoded_on_the_fly():
    """A picker may return a candidate outside the prepared set (e.g. a copy with another
    order); it is answered and counted all the same."""
    view = make_view(CONFIG, frozenset(), 0)
    stranger = Candidate("203.0.113.9", 8443, "elsewhere", 1.0, True, order=99)
    view.domains[f"rr.{ZONE}"].families[4].picker = FixedPicker(stranger)
    stats = QueryStats()
    fast = FastPath.from_view(view, stats)
    reply = dns.message.from_wire(fast.respond(query(f"rr.{ZONE}"), True))
    assert reply.answer[0][0].address == "203.0.113.9" and reply.answer[0].ttl == 15
    assert stats.routing == {(f"rr.{ZONE}", "round-robin", "203.0.113.9:8443"): 1}


class FixedPicker:
    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate

    def pick(self) -> Optional[Candidate]:
        return self.candidate


def fresh_table(view: AnsweringView) -> dict:
    """(key -> (domain, type)) of a fast path built from scratch for ``view``."""
    return {key: (entry.domain, entry.query_key[1])
            for key, entry in FastPath.from_view(view, QueryStats())._table.items()}


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.frozensets(st.sampled_from(DOMAINS)),
                                st.frozensets(st.sampled_from(DOMAINS)),
                                st.frozensets(st.sampled_from(ADDRESSES))), min_size=1, max_size=6))
def test_incremental_rebuilds_match_a_fresh_build(steps):
    """After any sequence of reloads (domains removed, TTLs changed) and health changes,
    the incrementally maintained table is the one a fresh fast path would build."""
    view = make_view(CONFIG, frozenset(), 0)
    fast = FastPath.from_view(view, QueryStats())
    for removed, retimed, down in steps:
        config = dataclasses.replace(CONFIG, domains=tuple(
            dataclasses.replace(d, ttl=7) if d.name in retimed else d
            for d in CONFIG.domains if d.name not in removed))
        def state(region: str, server: ServerConfig, down: frozenset = down) -> ServedState:
            return ServedState(healthy=server.address not in down, weight=float(server.weight),
                               last_healthy=1.0)

        view = build_view(config, state, random.Random(0), previous=view)
        fast.rebuild(view)
        assert {key: (entry.domain, entry.query_key[1]) for key, entry in fast._table.items()} \
            == fresh_table(view)


def test_queries_with_a_cookie_are_answered_like_the_full_path():
    """dig and BIND send a client cookie by default: the fast path answers, ignoring it as
    the full path does (no cookie in the answer)."""
    _, reference, _, _, fast = twin_responders()
    data = query(f"rr.{ZONE}", use_edns=0, options=[dns.edns.GenericOption(10, b"x" * 8)])
    reply = fast.respond(data, True)
    assert reply is not None and reply == reference(data)
    assert dns.message.from_wire(reply).options == ()


def test_a_repeated_query_is_answered_from_memory_with_its_own_id_and_the_current_pick():
    """The same query bytes (another ID) skip the parse: the reply carries the new ID, the
    picker still rotates, counters still count, and a rebuild forgets what was remembered."""
    stats = QueryStats()
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), stats)
    first = dns.message.make_query(f"rr.{ZONE}", "A", use_edns=0)
    again = dns.message.from_wire(first.to_wire())
    again.id = (first.id + 1) % 65536
    replies = [dns.message.from_wire(fast.respond(m.to_wire(), True)) for m in (first, again, again)]
    assert [r.id for r in replies] == [first.id, again.id, again.id]
    assert len(fast._seen) == 1
    assert len({r.answer[0][0].address for r in replies}) > 1  # still rotating
    assert sum(stats.queries.values()) == 3 and sum(stats.routing.values()) == 3
    fast.rebuild(make_view(CONFIG, frozenset({"192.0.2.10"}), 0))
    assert fast._seen == {}
    for _ in range(4):
        reply = dns.message.from_wire(fast.respond(query(f"fo.{ZONE}"), True))
        assert reply.answer[0][0].address == "192.0.2.11"


def test_remembered_queries_are_bounded(monkeypatch):
    """Distinct spellings (0x20 case randomisation) fill the memory at most to its limit."""
    monkeypatch.setattr(fastpath, "_SEEN_LIMIT", 64)
    fast = FastPath.from_view(make_view(CONFIG, frozenset(), 0), QueryStats())
    name = f"rr.{ZONE}"
    letters = [k for k, c in enumerate(name) if c.isalpha()]
    sizes = []
    for i in range(fastpath._SEEN_LIMIT + 10):
        spelled = "".join(c.upper() if k in letters and i >> letters.index(k) & 1 else c
                          for k, c in enumerate(name))
        assert fast.respond(query(spelled), True) is not None
        sizes.append(len(fast._seen))
    assert max(sizes) == fastpath._SEEN_LIMIT and sizes[-1] < fastpath._SEEN_LIMIT  # full, then cleared
