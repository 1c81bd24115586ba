"""The strict wire reader and the answering function under property-based fuzzing.

Budgets are small by default so the suite stays fast; a long fuzzing run sets
``OPENGSLB_FUZZ_EXAMPLES`` (see bench/README.md, "Fuzzing"):

    OPENGSLB_FUZZ_EXAMPLES=200000 python -m pytest -q --timeout 0 tests/unit/test_dns_wire.py
"""

import os
import random
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opengslb.config.model import Config, DNSConfig, SOAConfig, ZoneConfig
from opengslb.dns.server import refusal_of
from opengslb.dns.view import build_view
from opengslb.dns.wire import MAX_RECORDS, Name, name_from_text, read_message, read_request
from tests.unit.dnsfixtures import Served

EXAMPLES = int(os.environ.get("OPENGSLB_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SERVED = Served()
NAMES = ["app.gslb.test", "APP.gslb.TEST", "gslb.test", "nx.gslb.test", "x.gslb.test", "ns1.gslb.test",
         "deep.x.gslb.test", "standalone.example", "elsewhere.example", "."]


# -- strategies ----------------------------------------------------------------------------------

labels = st.binary(min_size=1, max_size=63)


@st.composite
def label_sequences(draw):
    """Label sequences of any octets ('.' and non-ASCII included) whose wire form is <= 255."""
    chosen = []
    size = 1
    for label in draw(st.lists(labels, max_size=20)):
        if size + len(label) + 1 > 255:
            break
        chosen.append(label)
        size += len(label) + 1
    return tuple(chosen)


@st.composite
def valid_queries(draw):
    """A well-formed query (wire bytes) built with dnspython, and the labels of its name."""
    if draw(st.booleans()):
        name = dns.name.from_text(draw(st.sampled_from(NAMES)))
    else:
        name = dns.name.Name(draw(label_sequences()) + (b"",))
    query = dns.message.make_query(name, draw(st.sampled_from(["A", "AAAA", "ANY", "SOA", "NS", "MX", "AXFR"])),
                                   use_edns=draw(st.sampled_from([-1, 0, 0, 1])),
                                   want_dnssec=draw(st.booleans()),
                                   payload=draw(st.sampled_from([0, 512, 1232, 4096, 65535])),
                                   options=draw(st.sampled_from([None, [dns.edns.GenericOption(3, b"")],
                                                                 [dns.edns.GenericOption(10, b"x" * 8)]])))
    query.id = draw(st.integers(0, 0xFFFF))
    query.set_opcode(draw(st.sampled_from([0, 0, 0, 0, 1, 2, 4, 5, 6, 15])))  # UPDATE's zone section too
    return query.to_wire(), name


@st.composite
def mutated_queries(draw):
    """A valid query with bytes overwritten, cut short or extended."""
    wire, _ = draw(valid_queries())
    data = bytearray(wire)
    for position, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                                         max_size=6)):
        data[position] = value
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut] if draw(st.booleans()) else data) + draw(st.binary(max_size=8))


@st.composite
def huge_packets(draw):
    """Up to 65,535 bytes: a header, then a name of repeated labels (one length, 1-63), optionally
    ending in the zone, then type and class: the maximal-label-count family of packets."""
    size = draw(st.integers(17 + 11, 65535))
    label = b"\x01a" if draw(st.booleans()) else bytes((draw(st.integers(1, 63)),)) * 2
    label = label[:1] + label[1:2] * label[0]
    suffix = draw(st.sampled_from([b"\x00", b"\x04gslb\x04test\x00", b""]))
    room = size - 12 - 4 - len(suffix)
    head = struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), 0x0100, 1, 0, 0, draw(st.integers(0, 1)))
    return head + (label * (room // len(label) + 1))[:room] + suffix + b"\x00\x01\x00\x01"


def worst_case(size):
    """The issue's packet: ``size`` bytes whose name is as many one-byte labels as fit."""
    room = size - 12 - 4 - 1
    assert room % 2 == 0
    data = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x01a" * (room // 2) + b"\x00\x00\x01\x00\x01"
    assert len(data) == size
    return data


packets = st.one_of(st.binary(max_size=600), mutated_queries(), valid_queries().map(lambda q: q[0]))


# -- the reader ----------------------------------------------------------------------------------

@FUZZ
@given(packets)
def test_reader_never_raises_and_drops_only_short_packets(data):
    """read_message returns None exactly for packets shorter than a header, and never raises."""
    message = read_message(data)
    assert (message is None) == (len(data) < 12)


@FUZZ
@given(valid_queries())
def test_well_formed_queries_are_read_label_by_label(query):
    """A well-formed query is read without error; its question's labels are dnspython's, octet for
    octet (a '.' inside a label stays inside it), and its bytes are echoed as received."""
    wire, name = query
    message = read_message(wire)
    assert message is not None and message.error is None
    assert message.question.name.labels() == name.labels[:-1]
    assert wire[12:12 + len(message.question.wire)] == message.question.wire


@FUZZ
@given(label_sequences())
def test_lookup_text_is_set_only_when_it_means_the_same_labels(chosen):
    """Names with a '.' or non-ASCII octet have no lookup text; otherwise splitting it on dots
    gives back the labels (lower-cased)."""
    name = Name.from_wire(b"".join(bytes((len(label),)) + label for label in chosen) + b"\x00")
    text = name.lookup_text()
    plain = all(b"." not in label and label.isascii() for label in chosen)
    assert (text is not None) == plain
    if text:
        assert tuple(text.encode("ascii").split(b".")) == tuple(label.lower() for label in chosen)


def test_names_of_256_octets_are_malformed_and_255_are_not():
    """RFC 1035 §2.3.4: the 255-octet limit counts length bytes and the root's zero."""
    for size, error in ((255, False), (256, True)):
        name = b"\x3f" + b"a" * 63
        name = name * 3 + bytes((size - 192 - 2,)) + b"b" * (size - 192 - 2) + b"\x00"
        assert len(name) == size
        message = read_message(struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01")
        assert (message.error is not None) == error, message.error


def test_pointer_chains_are_bounded():
    """A 64 KB message of chained backward pointers is rejected after at most 127 jumps per name
    and 16 records, in well under 5 ms (RFC 1035 §4.1.4)."""
    head = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 1) + b"\x01a\x00\x00\x01\x00\x01"  # question at 12
    body = bytearray(head)
    while len(body) < 65000:  # each pointer points at the previous one
        body += struct.pack("!H", 0xC000 | (len(body) - 2 if len(body) > len(head) else 12))
    data = bytes(body) + b"\xc0" + bytes((len(body) - 2) & 0xFF)
    started = time.perf_counter()
    message = read_message(data)
    assert message.error is not None
    assert time.perf_counter() - started < 0.005


def test_too_many_records_is_malformed():
    """A request may carry at most MAX_RECORDS records besides its question."""
    root_a = b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"
    data = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, MAX_RECORDS + 1) + b"\x00\x00\x01\x00\x01" \
        + root_a * (MAX_RECORDS + 1)
    assert "records" in read_message(data).error
    data = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, MAX_RECORDS) + b"\x00\x00\x01\x00\x01" + root_a * MAX_RECORDS
    assert read_message(data).error is None


def test_name_from_text_round_trips():
    """Configured names become label sequences; bad ones raise ValueError."""
    assert name_from_text("App.Example.").wire == b"\x03App\x07Example\x00"
    assert name_from_text("").wire == b"\x00"
    for bad in ("a..b", "x" * 64, ".".join(["abcd"] * 60)):
        try:
            name_from_text(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


# -- the answering function (fast path, then the full path) ---------------------------------------

def check_reply(data, reply, udp):
    """Every reply parses, echoes the ID and the question as sent, and fits the size limit."""
    request = read_request(data)
    if request is None:
        assert reply is None
        return
    assert reply is not None
    message = dns.message.from_wire(reply)  # raises if dnspython cannot parse it
    assert message.id == request.id
    if message.question:
        assert request.question is not None
        assert reply[12:12 + len(request.question.wire)] == request.question.wire
    else:
        assert message.rcode() in (dns.rcode.FORMERR, dns.rcode.NOTIMP)
    if udp:
        edns = request.edns
        assert len(reply) <= (512 if edns is None else max(512, edns.udp_size))
    assert (message.edns >= 0) == (request.edns is not None)


@FUZZ
@given(packets)
def test_every_reply_parses_and_echoes_id_and_question(data):
    """Whatever arrives, over UDP and TCP: no exception, and every reply is a well-formed
    message echoing the ID and the question as sent, within the size limit."""
    check_reply(data, SERVED.udp(data), udp=True)
    check_reply(data, SERVED.tcp(data), udp=False)


def cost(ask, data):
    """Seconds ``ask(data)`` takes: the fastest of up to five tries, so that a pause of the
    machine (another process, the garbage collector) is not mistaken for the packet's cost."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        ask(data)
        best = min(best, time.perf_counter() - started)
        if best < 0.005:
            break
    return best


@FUZZ
@given(huge_packets())
def test_maximal_label_count_packets_are_cheap(data):
    """Packets up to 64 KB made of as many labels as fit are answered in < 5 ms, over UDP and
    TCP, with well-formed replies."""
    check_reply(data, SERVED.udp(data), udp=True)
    check_reply(data, SERVED.tcp(data), udp=False)
    assert cost(SERVED.udp, data) < 0.005, len(data)
    assert cost(SERVED.tcp, data) < 0.005, len(data)


def test_the_64k_worst_case_packet_over_both_transports():
    """The issue's packet: 65,507 bytes (UDP) / 65,535 bytes (TCP) of one-byte labels: FORMERR
    within 512 bytes in < 5 ms."""
    for size, udp in ((65507, True), (65535, False), (65507, False)):
        data = worst_case(size)
        ask = SERVED.udp if udp else SERVED.tcp
        reply = ask(data)
        assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR and len(reply) <= 512
        assert cost(ask, data) < 0.005


@FUZZ
@given(st.one_of(valid_queries().map(lambda q: q[0]), mutated_queries()))
def test_what_the_fast_path_takes_the_strict_reader_accepts(data):
    """The fast path is the strict reader's fast case: every query it answers is well formed,
    a plain QUERY with one question, and it echoes that question."""
    reply = SERVED.fast.respond(data, True)
    if reply is None:
        return
    message = read_message(data)
    assert message is not None and message.error is None and refusal_of(message) is None
    assert reply[12:12 + len(message.question.wire)] == message.question.wire


def test_fast_path_takes_dotted_lookalikes_never():
    """A label "app.gslb" under test. never matches the prepared app.gslb.test: the fast path
    declines and the full path refuses it (outside every zone), without AA."""
    data = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x08app.gslb\x04test\x00\x00\x01\x00\x01"
    assert SERVED.fast.respond(data, True) is None
    message = dns.message.from_wire(SERVED.udp(data))
    assert message.rcode() == dns.rcode.REFUSED and not message.flags & dns.flags.AA


def zone_view(*zones):
    """A view whose zones are ``zones`` (no domains)."""
    config = Config(dns=DNSConfig(zones=tuple(ZoneConfig(z, SOAConfig(f"ns.{z}", f"h.{z}")) for z in zones)))
    return build_view(config, lambda region, server: None, random.Random(0))


@given(st.lists(st.sampled_from([b"x", b"gslb", b"test", b"GSLB", b"x\x04gslb\x04test", b"sub.gslb", b"a" * 63]),
                max_size=6))
def test_zone_lookup_takes_the_longest_zone_at_a_label_boundary(chosen):
    """Whichever strategy the lookup uses (per zone length or per label), the zone found is the
    longest one whose labels end the name's labels, compared case-insensitively."""
    zones = ["test", "gslb.test", "x.gslb.test", "deep.x.gslb.test", "a.b.c.d.e.test"]
    view = zone_view(*zones)
    name = Name.from_wire(b"".join(bytes((len(label),)) + label for label in chosen) + b"\x00")
    lowered = tuple(label.lower() for label in chosen)
    matching = [z for z in zones if lowered[len(lowered) - len(z.split(".")):] == tuple(
        label.encode() for label in z.split(".")) and len(z.split(".")) <= len(lowered)]
    expected = max(matching, key=len) if matching else None
    found = view.zone_for_name(name)
    assert (found.name if found else None) == expected
