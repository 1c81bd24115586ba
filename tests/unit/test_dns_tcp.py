"""DNS over TCP listener bounds (DESIGN 14, issue 11): connection caps, idle time, message deadline."""

import struct

import dns.message
import dns.rcode
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from opengslb.dns.server import TCP_IDLE_TIMEOUT, TCP_MESSAGE_DEADLINE, DNSStreamFactory
from tests.unit.dnsfixtures import Served, gslb_test_config

QUERY = dns.message.make_query("app.gslb.test", "A").to_wire()
FRAMED = struct.pack("!H", len(QUERY)) + QUERY


def peer(host, port=40000):
    return IPv4Address("TCP", host, port)


def connect(factory, host, port=40000):
    """Accept a connection from ``host`` the way the reactor does: buildProtocol, then
    makeConnection on a transport (``None`` when the factory refused it)."""
    protocol = factory.buildProtocol(peer(host, port))
    if protocol is None:
        return None, None
    transport = StringTransport(peerAddress=peer(host, port))
    protocol.makeConnection(transport)
    return protocol, transport


def replies_in(out):
    """The DNS messages in a TCP byte stream."""
    replies = []
    while out:
        (length,) = struct.unpack("!H", out[:2])
        replies.append(dns.message.from_wire(out[2:2 + length]))
        out = out[2 + length:]
    return replies


def close(protocol, transport):
    transport.loseConnection()
    protocol.connectionLost(None)


def test_over_the_per_source_cap_is_refused_before_reading():
    """The connection over the per-source cap gets no protocol (the reactor closes the accepted
    socket unread); other sources still connect, and closing one frees its slot."""
    clock = Clock()
    factory = DNSStreamFactory(Served().responder, clock, limits=lambda: (10, 2))
    first = connect(factory, "192.0.2.1")
    second = connect(factory, "192.0.2.1")
    assert first[0] is not None and second[0] is not None
    assert connect(factory, "192.0.2.1") == (None, None)
    assert connect(factory, "192.0.2.2")[0] is not None
    assert factory.limiter.refused == {"listener_full": 0, "source_full": 1} and factory.limiter.open == 3
    close(*first)
    assert (factory.limiter.held_by("192.0.2.1"), factory.limiter.held_by("192.0.2.2")) == (1, 1)
    assert connect(factory, "192.0.2.1")[0] is not None


def test_over_the_listener_cap_is_refused():
    """The connection over the listener's cap is refused whatever its source."""
    factory = DNSStreamFactory(Served().responder, Clock(), limits=lambda: (3, 2))
    opened = [connect(factory, f"192.0.2.{i}") for i in range(3)]
    assert all(protocol is not None for protocol, _ in opened)
    assert connect(factory, "192.0.2.99") == (None, None)
    assert factory.limiter.refused["listener_full"] == 1
    close(*opened[0])
    assert connect(factory, "192.0.2.99")[0] is not None


def test_default_limits_come_from_the_configuration():
    """dns.tcp_max_connections and dns.tcp_max_connections_per_source bound the listener."""
    config = gslb_test_config()
    config = config.__class__(dns=config.dns.__class__(
        listen_address=config.dns.listen_address, zones=config.dns.zones,
        tcp_max_connections=5, tcp_max_connections_per_source=1),
        regions=config.regions, domains=config.domains)
    factory = DNSStreamFactory(Served(config).responder, Clock())
    assert connect(factory, "192.0.2.1")[0] is not None
    assert connect(factory, "192.0.2.1") == (None, None)
    for i in range(2, 6):
        assert connect(factory, f"192.0.2.{i}")[0] is not None
    assert connect(factory, "192.0.2.9") == (None, None)


def test_queries_are_answered_and_the_connection_stays_open():
    """Several length-prefixed queries in one connection are answered in order."""
    factory = DNSStreamFactory(Served().responder, Clock(), limits=lambda: (10, 10))
    protocol, transport = connect(factory, "192.0.2.1")
    protocol.dataReceived(FRAMED * 3)
    assert [r.rcode() for r in replies_in(transport.value())] == [dns.rcode.NOERROR] * 3
    assert not transport.disconnecting


def test_idle_connections_close_after_the_idle_timeout():
    """No complete message for TCP_IDLE_TIMEOUT seconds closes the connection."""
    clock = Clock()
    factory = DNSStreamFactory(Served().responder, clock, limits=lambda: (10, 10))
    protocol, transport = connect(factory, "192.0.2.1")
    clock.advance(TCP_IDLE_TIMEOUT - 1)
    protocol.dataReceived(FRAMED)
    clock.advance(TCP_IDLE_TIMEOUT - 1)
    assert not transport.disconnecting
    clock.advance(1.5)
    assert transport.disconnecting


def test_a_trickled_message_is_cut_off_at_the_deadline():
    """A sender trickling one byte a second cannot hold the connection: the message must arrive
    whole within TCP_MESSAGE_DEADLINE of its first byte, even though bytes keep coming."""
    clock = Clock()
    factory = DNSStreamFactory(Served().responder, clock, limits=lambda: (10, 10))
    protocol, transport = connect(factory, "192.0.2.1")
    for byte in FRAMED[:int(TCP_MESSAGE_DEADLINE) + 5]:
        if transport.disconnected:
            break
        protocol.dataReceived(bytes((byte,)))
        clock.advance(1.0)
    assert transport.disconnected  # aborted: StringTransport.abortConnection sets it
    assert clock.seconds() <= TCP_MESSAGE_DEADLINE + 1
    protocol.connectionLost(None)
    assert factory.limiter.open == 0 and factory.limiter.held_by("192.0.2.1") == 0


def test_each_complete_message_restarts_the_deadline():
    """A client that completes its messages in time is never cut off, however long it stays."""
    clock = Clock()
    factory = DNSStreamFactory(Served().responder, clock, limits=lambda: (10, 10))
    protocol, transport = connect(factory, "192.0.2.1")
    half = len(FRAMED) // 2
    for _ in range(10):
        protocol.dataReceived(FRAMED[:half])
        clock.advance(TCP_MESSAGE_DEADLINE * 0.6)
        protocol.dataReceived(FRAMED[half:])
        clock.advance(TCP_MESSAGE_DEADLINE * 0.6)
    assert not transport.disconnected and not transport.disconnecting
    assert len(replies_in(transport.value())) == 10


def test_reading_pauses_while_replies_are_not_read():
    """The protocol is its transport's streaming producer: when unread replies fill the buffer,
    reading stops, and resumes when the client catches up."""
    factory = DNSStreamFactory(Served().responder, Clock(), limits=lambda: (10, 10))
    protocol, transport = connect(factory, "192.0.2.1")
    assert transport.producer is protocol and transport.streaming
    protocol.pauseProducing()
    assert transport.producerState == "paused"
    protocol.dataReceived(FRAMED * 2)
    assert transport.value() == b""  # nothing parsed while paused
    protocol.resumeProducing()
    assert transport.producerState == "producing" and transport.value()
