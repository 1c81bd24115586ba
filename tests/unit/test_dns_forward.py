"""A follower relaying queries to the leader (follower_queries: forward), at the wire level."""

import struct
from types import SimpleNamespace

import dns.edns
import dns.flags
import dns.message
import dns.rcode
from twisted.internet.task import Clock

from opengslb.dns.forward import FORWARD_TIMEOUT, Forwarder
from opengslb.dns.reply import FORWARDED_OPTION
from opengslb.dns.server import DNSResponder
from opengslb.dns.wire import read_request
from tests.unit.dnsfixtures import Served

LEADER = ("192.0.2.99", 53)


def forwarder():
    """A forwarder on a clock whose datagrams to the leader are collected in ``sent``."""
    clock = Clock()
    relay = Forwarder(clock, lambda: LEADER)
    sent = []
    relay.transport = SimpleNamespace(write=lambda data, addr: sent.append((data, addr)))
    relay._port = object()  # "started"
    return relay, clock, sent


def leader_reply(relayed):
    """What a serving leader answers to the relayed query."""
    return Served().responder.respond(relayed, 512)


def test_the_question_is_relayed_byte_for_byte_and_answered_with_the_clients_id():
    """The relayed query carries the client's question bytes (its letter case included)
    and the private option; the reply reaches the client with its ID, without OPT when it sent none."""
    relay, _, sent = forwarder()
    query = dns.message.make_query("App.gslb.test", "A")
    query.id = 0x4242
    request = read_request(query.to_wire())
    result = []
    relay.forward(request, 512).addCallback(result.append)
    ((relayed, address),) = sent
    assert address == LEADER and relayed[12:12 + len(request.question.wire)] == request.question.wire
    relayed_message = dns.message.from_wire(relayed)
    assert [o.otype for o in relayed_message.options] == [FORWARDED_OPTION]
    assert relayed_message.payload == 512
    relay.datagramReceived(leader_reply(relayed), LEADER)
    reply = dns.message.from_wire(result[0])
    assert reply.id == 0x4242 and reply.rcode() == dns.rcode.NOERROR and reply.edns == -1
    assert reply.answer[0].name.to_text() == "App.gslb.test."


def test_an_edns_client_keeps_the_opt():
    """A client that sent EDNS gets the leader's OPT (DO copied through)."""
    relay, _, sent = forwarder()
    request = read_request(dns.message.make_query("app.gslb.test", "A", use_edns=0, want_dnssec=True).to_wire())
    result = []
    relay.forward(request, 1232).addCallback(result.append)
    relay.datagramReceived(leader_reply(sent[0][0]), LEADER)
    reply = dns.message.from_wire(result[0])
    assert reply.edns == 0 and reply.ednsflags & dns.flags.DO and reply.options == ()


def test_bad_or_late_replies_become_servfail():
    """A malformed reply, one for another question, or none within the timeout → SERVFAIL."""
    relay, clock, sent = forwarder()
    request = read_request(dns.message.make_query("app.gslb.test", "A").to_wire())
    results = []
    for _ in range(3):
        relay.forward(request, 512).addCallback(results.append)
    wrong_question = dns.message.make_response(dns.message.make_query("nx.gslb.test", "A"))
    relay.datagramReceived(sent[0][0][:2] + b"\x80" + b"\x00" * 12, LEADER)  # malformed
    wrong_question.id = struct.unpack("!H", sent[1][0][:2])[0]
    relay.datagramReceived(wrong_question.to_wire(), LEADER)
    clock.advance(FORWARD_TIMEOUT)
    assert [dns.message.from_wire(r).rcode() for r in results] == [dns.rcode.SERVFAIL] * 3


def test_an_already_relayed_query_is_not_relayed_again():
    """A node that is not serving answers SERVFAIL to a query carrying the private option."""
    served = Served()
    relay, _, sent = forwarder()
    responder = DNSResponder(lambda: served.view, served.stats, serving=lambda: False,
                             follower_policy=lambda: "forward", forwarder=relay)
    relayed = dns.message.make_query("app.gslb.test", "A", use_edns=0,
                                     options=[dns.edns.GenericOption(FORWARDED_OPTION, b"opengslb")])
    reply = dns.message.from_wire(responder.respond(relayed.to_wire(), 512))
    assert reply.rcode() == dns.rcode.SERVFAIL and not sent


def test_a_follower_refuses_or_formerrs_without_relaying():
    """refuse: REFUSED with the question; malformed queries get FORMERR, never relayed."""
    served = Served()
    relay, _, sent = forwarder()
    responder = DNSResponder(lambda: served.view, served.stats, serving=lambda: False,
                             follower_policy=lambda: "refuse", forwarder=relay)
    reply = dns.message.from_wire(responder.respond(dns.message.make_query("app.gslb.test", "A").to_wire(), 512))
    assert reply.rcode() == dns.rcode.REFUSED and reply.question
    forwarding = DNSResponder(lambda: served.view, served.stats, serving=lambda: False,
                              follower_policy=lambda: "forward", forwarder=relay)
    bad = dns.message.make_query("app.gslb.test", "A").to_wire() + b"\x00"
    assert dns.message.from_wire(forwarding.respond(bad, 512)).rcode() == dns.rcode.FORMERR
    assert not sent
