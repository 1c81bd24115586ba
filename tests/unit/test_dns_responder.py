"""Wire-level DNS behaviour of the responder (SPEC §3), decoded with dnspython."""

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
from hypothesis import given, settings
from hypothesis import strategies as st

from opengslb.config.model import NameserverConfig
from tests.unit.dnsfixtures import make_responder, sample_config


def ask(responder, name, rdtype="A", edns=-1, payload=1232, tcp=False, want_dnssec=False,
        rd=True):
    query = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload,
                                   want_dnssec=want_dnssec)
    if not rd:
        query.flags &= ~dns.flags.RD
    wire = responder.respond(query.to_wire(), None if tcp else 512)
    return query, dns.message.from_wire(wire)


def test_a_answer_is_authoritative_with_domain_ttl():
    """An A query for a domain answers one IPv4 address, AA set, with the domain's TTL."""
    responder, _ = make_responder()
    query, reply = ask(responder, "app.gslb.example.com")
    assert reply.id == query.id
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and reply.flags & dns.flags.QR and reply.flags & dns.flags.RD
    assert not reply.flags & dns.flags.RA
    (rrset,) = reply.answer
    assert rrset.ttl == 15 and rrset.rdtype == dns.rdatatype.A
    assert rrset[0].address in {"192.0.2.10", "192.0.2.11", "198.51.100.10"}


def test_rd_is_copied_from_the_query():
    """RD in the reply mirrors RD in the query."""
    responder, _ = make_responder()
    _, reply = ask(responder, "app.gslb.example.com", rd=False)
    assert not reply.flags & dns.flags.RD


def test_default_ttl_applies_without_domain_ttl():
    """A domain without ttl answers with dns.default_ttl."""
    responder, _ = make_responder()
    _, reply = ask(responder, "fo.gslb.example.com")
    assert reply.answer[0].ttl == 60


def test_aaaa_only_from_ipv6_servers():
    """AAAA answers come only from IPv6 servers, A only from IPv4."""
    responder, _ = make_responder()
    for _ in range(10):
        _, reply = ask(responder, "app.gslb.example.com", "AAAA")
        assert reply.answer[0][0].address == "2001:db8::10"
        _, reply = ask(responder, "app.gslb.example.com", "A")
        assert ":" not in reply.answer[0][0].address


def test_letter_case_is_echoed():
    """The question and answer owner keep the client's letter case."""
    responder, _ = make_responder()
    _, reply = ask(responder, "ApP.GsLb.ExAmPlE.cOm")
    assert reply.question[0].name.to_text() == "ApP.GsLb.ExAmPlE.cOm."
    assert reply.answer[0].name.to_text() == "ApP.GsLb.ExAmPlE.cOm."


def _soa_in_authority(reply, ttl):
    (rrset,) = reply.authority
    assert rrset.rdtype == dns.rdatatype.SOA
    assert rrset.name.to_text() == "gslb.example.com."
    assert rrset.ttl == ttl


def test_unknown_name_in_zone_is_nxdomain_with_soa():
    """An unconfigured name inside a zone → NXDOMAIN, AA, SOA with TTL min(minimum, SOA TTL)."""
    responder, stats = make_responder()
    _, reply = ask(responder, "nope.gslb.example.com")
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA
    assert not reply.answer
    _soa_in_authority(reply, 30)
    assert stats.queries[("_other", "A", "NXDOMAIN")] == 1


def test_nodata_for_missing_type():
    """A configured name without the asked type → NOERROR, empty answer, SOA in authority."""
    responder, _ = make_responder()
    for name, rdtype in (("v6.gslb.example.com", "A"), ("deep.a.b.gslb.example.com", "AAAA"),
                         ("app.gslb.example.com", "MX"), ("app.gslb.example.com", "TXT")):
        _, reply = ask(responder, name, rdtype)
        assert reply.rcode() == dns.rcode.NOERROR, (name, rdtype)
        assert not reply.answer
        _soa_in_authority(reply, 30)


def test_empty_non_terminal_is_nodata():
    """A name with configured names below it answers NODATA, not NXDOMAIN (RFC 8020)."""
    responder, _ = make_responder()
    for name in ("a.b.gslb.example.com", "b.gslb.example.com"):
        _, reply = ask(responder, name)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
        _soa_in_authority(reply, 30)
    _, reply = ask(responder, "x.a.b.gslb.example.com")
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_outside_every_zone_is_refused():
    """Names outside all zones → REFUSED without AA."""
    responder, stats = make_responder()
    _, reply = ask(responder, "www.example.net")
    assert reply.rcode() == dns.rcode.REFUSED and not reply.flags & dns.flags.AA
    assert stats.queries[("_other", "A", "REFUSED")] == 1


def test_domain_outside_zones_is_its_own_apex():
    """A domain outside the configured zones is its own apex: its SOA and NS name the
    configured zones' name servers (RFC 1034 §4.2.1), the first one as MNAME."""
    responder, _ = make_responder()
    _, reply = ask(responder, "standalone.example.org", "SOA")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    soa = reply.answer[0][0]
    assert soa.mname.to_text() == "ns1.gslb.example.com."
    assert soa.rname.to_text() == "hostmaster.standalone.example.org."
    _, reply = ask(responder, "standalone.example.org", "NS")
    assert sorted(r.target.to_text() for r in reply.answer[0]) == ["ns.other-provider.net.",
                                                                  "ns1.gslb.example.com."]
    _, reply = ask(responder, "x.standalone.example.org")
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_without_any_name_server_the_apex_names_itself():
    """With no name server configured anywhere, an implicit apex is its own NS and SOA MNAME:
    a name that exists and this server answers (RFC 1034 §4.2.1 wants both)."""
    responder, _ = make_responder(sample_config(nameservers=()))
    _, reply = ask(responder, "standalone.example.org", "NS")
    assert [r.target.to_text() for r in reply.answer[0]] == ["standalone.example.org."]
    _, reply = ask(responder, "standalone.example.org", "SOA")
    assert reply.answer[0][0].mname.to_text() == "standalone.example.org."
    _, reply = ask(responder, "standalone.example.org", "A")
    assert reply.answer[0][0].address == "198.51.100.10"


def test_apex_soa_and_ns_with_glue():
    """The apex answers SOA and NS; in-zone nameservers come with glue."""
    responder, _ = make_responder()
    _, reply = ask(responder, "gslb.example.com", "SOA")
    soa = reply.answer[0][0]
    assert (soa.mname.to_text(), soa.rname.to_text()) == ("ns1.gslb.example.com.", "hostmaster.example.com.")
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (14400, 3600, 1209600, 30)
    _, reply = ask(responder, "gslb.example.com", "NS")
    assert sorted(r.target.to_text() for r in reply.answer[0]) == ["ns.other-provider.net.",
                                                                  "ns1.gslb.example.com."]
    (glue,) = reply.additional
    assert glue.name.to_text() == "ns1.gslb.example.com." and glue[0].address == "192.0.2.53"
    _, reply = ask(responder, "ns1.gslb.example.com", "A")
    assert reply.answer[0][0].address == "192.0.2.53" and reply.flags & dns.flags.AA
    _, reply = ask(responder, "ns1.gslb.example.com", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_all_down_is_servfail():
    """All candidates unhealthy → SERVFAIL."""
    responder, stats = make_responder(down={"198.51.100.10"})
    _, reply = ask(responder, "deep.a.b.gslb.example.com")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert stats.queries[("deep.a.b.gslb.example.com", "A", "SERVFAIL")] == 1


def test_all_down_returns_last_healthy_when_configured():
    """return_last_healthy: the address seen healthy most recently is answered."""
    responder, _ = make_responder(sample_config(return_last_healthy=True),
                                  down={"192.0.2.10", "192.0.2.11", "198.51.100.10"},
                                  last_healthy={"192.0.2.10": 5.0, "192.0.2.11": 9.0, "198.51.100.10": 7.0})
    _, reply = ask(responder, "app.gslb.example.com")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer[0][0].address == "192.0.2.11"


def test_failover_answers_first_healthy():
    """failover answers the primary, and the next server when it is down."""
    responder, _ = make_responder()
    assert ask(responder, "fo.gslb.example.com")[1].answer[0][0].address == "192.0.2.10"
    responder, _ = make_responder(down={"192.0.2.10"})
    assert ask(responder, "fo.gslb.example.com")[1].answer[0][0].address == "192.0.2.11"


def test_edns_opt_is_echoed():
    """A query with EDNS gets an OPT record back (version 0, our payload size)."""
    responder, _ = make_responder()
    _, reply = ask(responder, "app.gslb.example.com", edns=0, payload=4096)
    assert reply.edns == 0 and reply.payload == 1232
    _, reply = ask(responder, "app.gslb.example.com")
    assert reply.edns == -1


def test_edns_version_above_zero_is_badvers():
    """EDNS version 1 → BADVERS with an OPT record (RFC 6891 §6.1.3)."""
    responder, _ = make_responder()
    query = dns.message.make_query("app.gslb.example.com", "A", use_edns=1)
    reply = dns.message.from_wire(responder.respond(query.to_wire(), 512))
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0


def _many_nameservers():
    return sample_config(nameservers=[NameserverConfig(f"ns{i}.gslb.example.com", f"192.0.2.{100 + i}")
                                      for i in range(30)])


def test_truncation_over_udp_and_full_answer_over_tcp():
    """An answer larger than the client's UDP size sets TC; the TCP retry gets everything."""
    responder, _ = make_responder(_many_nameservers())
    query, reply = ask(responder, "gslb.example.com", "NS")
    assert reply.flags & dns.flags.TC and not reply.answer
    _, reply = ask(responder, "gslb.example.com", "NS", edns=0, payload=4096)
    assert not reply.flags & dns.flags.TC and len(reply.answer[0]) == 30 and reply.edns == 0
    _, reply = ask(responder, "gslb.example.com", "NS", tcp=True)
    assert not reply.flags & dns.flags.TC and len(reply.answer[0]) == 30
    assert len(reply.additional) == 30


def test_advertised_size_is_honoured():
    """Responses to an EDNS client never exceed its advertised size; TC when they would."""
    responder, _ = make_responder(_many_nameservers())
    query = dns.message.make_query("gslb.example.com", "NS", use_edns=0, payload=800)
    wire = responder.respond(query.to_wire(), 512)
    assert len(wire) <= 800
    reply = dns.message.from_wire(wire)
    assert reply.edns == 0  # the OPT survives truncation or additional dropping


def test_other_opcode_is_notimp():
    """Opcodes other than QUERY → NOTIMP."""
    responder, _ = make_responder()
    query = dns.message.make_query("app.gslb.example.com", "A")
    query.set_opcode(dns.opcode.STATUS)
    reply = dns.message.from_wire(responder.respond(query.to_wire(), 512))
    assert reply.rcode() == dns.rcode.NOTIMP and reply.id == query.id
    assert reply.opcode() == dns.opcode.STATUS


def test_unparsable_query_with_header_is_formerr():
    """Garbage after a readable header → FORMERR echoing the ID; shorter than a header → dropped."""
    responder, _ = make_responder()
    data = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x07example\xff\xff"
    reply = dns.message.from_wire(responder.respond(data, 512))
    assert reply.id == 0xBEEF and reply.rcode() == dns.rcode.FORMERR
    assert responder.respond(b"\x01\x02\x03", 512) is None


def test_two_questions_is_formerr():
    """A query with two questions → FORMERR."""
    responder, _ = make_responder()
    query = dns.message.make_query("app.gslb.example.com", "A")
    wire = bytearray(query.to_wire())
    question = bytes(wire[12:])
    wire[4:6] = b"\x00\x02"
    reply = dns.message.from_wire(responder.respond(bytes(wire) + question, 512))
    assert reply.rcode() == dns.rcode.FORMERR


def test_responses_are_never_answered():
    """A packet with QR set is dropped (no reflection loops)."""
    responder, _ = make_responder()
    query = dns.message.make_query("app.gslb.example.com", "A")
    query.flags |= dns.flags.QR
    assert responder.respond(query.to_wire(), 512) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data):
    """Whatever arrives, respond() returns bytes or None and never raises."""
    responder, _ = make_responder()
    reply = responder.respond(data, 512)
    assert reply is None or isinstance(reply, bytes)
    assert ask(responder, "app.gslb.example.com")[1].rcode() == dns.rcode.NOERROR


def test_query_and_routing_counters():
    """Each query counts once under its domain, type and rcode; routing decisions per server."""
    responder, stats = make_responder()
    for _ in range(10):
        ask(responder, "fo.gslb.example.com")
    assert stats.queries[("fo.gslb.example.com", "A", "NOERROR")] == 10
    assert stats.routing[("fo.gslb.example.com", "failover", "192.0.2.10:80")] == 10
