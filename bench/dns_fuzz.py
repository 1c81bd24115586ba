#!/usr/bin/env python3
"""Network fuzz benchmark: mutated and random DNS packets against the real server.

Starts OpenGSLB (``python -m opengslb``) on loopback with a zone, glue, NSID
and TCP health checks against local listeners, then sends

* ``--packets`` UDP datagrams (default 1,000,000) and
* ``--tcp-messages`` length-framed TCP messages (default 20,000),

drawn from: valid queries of many shapes (every type, EDNS with DO, NSID,
cookies, version 1, odd payload sizes, mixed case, '.' and non-ASCII octets
inside labels), the malformed cases of issue 12, mutations of both (bit
flips, interesting bytes, inserted/deleted/duplicated ranges, cuts, spliced
packets, lying counts) and random bytes, plus, rarely, 64 KB maximal-label-
count packets and pointer chains.  Every packet gets a sequence number as
its ID, so replies are matched in order.  The server must reply to every
packet of 12 bytes or more without QR set, and to nothing else.

Checks, per reply: dnspython parses it; the ID is the one sent; the
question, when present, is the one sent byte for byte (when absent the rcode
is FORMERR or NOTIMP); a UDP reply without OPT is at most 512 bytes and one
with OPT at most the client's EDNS size.  After every batch a valid query on
a fresh socket must be answered within 100 ms.  At the end: tracebacks in
the server log, resident memory growth after the first batch, and the cost
of the worst packets (64 KB: the most labels, the most EDNS options, a chain
of compression pointers) measured as a round trip.

    python bench/dns_fuzz.py                     # 10^6 UDP + 2x10^4 TCP (a few minutes)
    python bench/dns_fuzz.py --packets 20000     # a cheap smoke run

Exit status 0 when every target is met.  See bench/README.md ("Fuzzing").
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, List, Optional, Tuple

import dns.edns
import dns.message
import dns.name
import dns.opcode
import dns.rcode
from dns_bench import Backends, Processes  # bench/ is this script's directory

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOOPBACK = "127.0.0.1"
BACKEND_PORT = 18181
PROBE = "app.gslb.test"

CONFIG = """\
dns:
  listen_address: "127.0.0.1:{port}"
  default_ttl: 60
  nsid: "fuzz-node"
  zones:
    - name: gslb.test
      nameservers: [{{name: ns1.gslb.test, address: 127.0.0.53}}, {{name: ns.elsewhere.example}}]
      soa: {{mname: ns1.gslb.test, rname: hostmaster.gslb.test, minimum: 30}}
logging: {{level: info, format: text}}
regions:
  - name: r1
    servers:
      - {{address: 127.0.10.1, port: {backend}}}
      - {{address: 127.0.10.2, port: {backend}, weight: 300}}
    health_check: {{type: tcp, interval: 5s, timeout: 1s}}
  - name: dead
    servers:
      - {{address: 127.0.10.9, port: {closed}}}
    health_check: {{type: tcp, interval: 1s, timeout: 500ms, failure_threshold: 1}}
domains:
  - {{name: app.gslb.test, routing_algorithm: round-robin, regions: [r1], ttl: 30}}
  - {{name: w.gslb.test, routing_algorithm: weighted, regions: [r1]}}
  - {{name: fo.gslb.test, routing_algorithm: failover, regions: [dead, r1]}}
  - {{name: dead.gslb.test, regions: [dead]}}
  - {{name: deep.x.gslb.test, regions: [r1]}}
  - {{name: standalone.example, regions: [r1]}}
cluster:
  raft: {{data_dir: {data}}}
"""


# -- packets ---------------------------------------------------------------------------------------

def header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", 0, flags, qd, an, ns, ar)


def wire_name(*labels: bytes) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def opt(size: int = 1232, do: bool = False, options: bytes = b"", version: int = 0) -> bytes:
    return b"\x00" + struct.pack("!HHBBHH", 41, size, 0, version, 0x8000 if do else 0, len(options)) + options


def seeds() -> List[bytes]:
    """Valid queries of many shapes and the malformed cases of issue 12."""
    names = [dns.name.from_text(n) for n in (
        "app.gslb.test", "APP.Gslb.TEST", "w.gslb.test", "fo.gslb.test", "dead.gslb.test", "gslb.test",
        "ns1.gslb.test", "nx.gslb.test", "x.gslb.test", "deep.x.gslb.test", "standalone.example",
        "nope.standalone.example", "outside.example", ".")]
    names += [dns.name.Name((b"app.gslb", b"test", b"")), dns.name.Name((b"\xc4pp", b"gslb", b"test", b"")),
              dns.name.Name((b"a" * 63,) * 3 + (b"b" * 61, b""))]
    edns_shapes: List[Dict[str, object]] = [
        {"use_edns": -1}, {"use_edns": 0}, {"use_edns": 0, "want_dnssec": True},
        {"use_edns": 0, "options": [dns.edns.GenericOption(3, b"")]},
        {"use_edns": 0, "options": [dns.edns.GenericOption(10, b"\x01" * 8)]},
        {"use_edns": 0, "payload": 0}, {"use_edns": 0, "payload": 65535}, {"use_edns": 1}]
    out = []
    for name in names:
        for rdtype in ("A", "AAAA", "ANY", "SOA", "NS", "MX", "TXT", "AXFR", "IXFR", "CNAME", "HINFO"):
            for shape in edns_shapes:
                out.append(dns.message.make_query(name, rdtype, **shape).to_wire())  # type: ignore[arg-type]
    for opcode in (dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE, 7, 15):
        query = dns.message.make_query("gslb.test", "SOA", use_edns=0)
        query.set_opcode(opcode)
        out.append(query.to_wire())
    question = wire_name(b"app", b"gslb", b"test") + b"\x00\x01\x00\x01"
    out += [
        header() + b"\x40" + b"a" * 64 + wire_name(b"gslb", b"test") + b"\x00\x01\x00\x01",
        header() + (b"\x3f" + b"a" * 63) * 4 + wire_name(b"gslb", b"test") + b"\x00\x01\x00\x01",
        header() + b"\x01." + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",
        header(qd=65535) + question,
        header(ar=1) + question + opt(options=b"\x00\x0a\x00\x08abcd"),
        header(ar=1) + question + opt()[:7],
        header(ar=2) + question + opt() + opt(),
        header(an=1) + question + opt(),
        header() + question + b"\x00\x01",
        header() + b"\x03app\xc0\x0c\x00\x01\x00\x01",
        header() + b"\xc0\x0c\x00\x01\x00\x01",
        header(qd=0, ar=1) + opt(options=b"\x00\x0a\x00\x08" + b"c" * 8),
        header(qd=2) + question + question,
        header(ns=1) + wire_name(b"gslb", b"test") + b"\x00\xfb\x00\x01" + b"\xc0\x0c\x00\x06\x00\x01"
        + b"\x00\x00\x00\x3c\x00\x16\x00\x00" + b"\x00" * 20,
    ]
    return out


INTERESTING = (0x00, 0x01, 0x2E, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFF)


def mutate(rng: random.Random, data: bytes, pool: List[bytes]) -> bytes:
    """One to four random edits of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        op = rng.randrange(12)
        size = len(buf)
        if op == 0 and size:
            buf[rng.randrange(size)] ^= 1 << rng.randrange(8)
        elif op == 1 and size:
            buf[rng.randrange(size)] = rng.choice(INTERESTING)
        elif op == 2:
            at = rng.randint(0, size)
            buf[at:at] = os.urandom(rng.randint(1, 16))
        elif op == 3 and size:
            at = rng.randrange(size)
            del buf[at:at + rng.randint(1, 16)]
        elif op == 4:
            del buf[rng.randint(0, size):]
        elif op == 5:
            buf += os.urandom(rng.randint(1, 32))
        elif op == 6 and size >= 12:
            at = 4 + 2 * rng.randrange(4)
            buf[at:at + 2] = struct.pack("!H", rng.choice((0, 1, 2, 3, 17, 255, 65535, rng.randrange(65536))))
        elif op == 7:
            other = rng.choice(pool)
            buf = buf[:rng.randint(0, size)] + other[rng.randint(0, len(other)):]
        elif op == 8 and size > 12:
            at = rng.randrange(12, size)
            buf[at] = rng.choice((0, 1, 2, 8, 63, 64, 65, 191, 192, 255))
        elif op == 9 and size > 12:
            start = rng.randrange(12, size)
            chunk = buf[start:start + rng.randint(1, 40)]
            buf[start:start] = chunk * rng.randint(1, 4)
        elif op in (10, 11):  # keep the structure, change what is asked
            end = question_end(buf)
            if end is not None:
                qtype = rng.choice((0, 1, 2, 5, 6, 12, 13, 16, 28, 41, 250, 251, 252, 255, rng.randrange(65536)))
                qclass = rng.choice((1, 1, 3, 4, 254, 255, rng.randrange(65536))) if op == 11 else 1
                buf[end:end + 4] = struct.pack("!HH", qtype, qclass)
        elif size == 0:
            buf += os.urandom(4)
    return bytes(buf[:65535])


def question_end(buf: bytearray) -> Optional[int]:
    """Where the first question's type field starts, when its name is plain labels."""
    position = 12
    while position < len(buf) and 0 < buf[position] <= 63:
        position += buf[position] + 1
    return position + 1 if position < len(buf) and buf[position] == 0 else None


def many_labels() -> bytes:
    """The 65,507-byte query whose name is as many one-byte labels as fit."""
    return header() + b"\x01a" * ((65507 - 17) // 2) + b"\x00\x00\x01\x00\x01"


def many_options() -> bytes:
    """A valid question with a 64 KB OPT record of empty options ending in two ECS options."""
    query = wire_name(b"app", b"gslb", b"test") + struct.pack("!HH", 1, 1)
    ecs = b"\x00\x08\x00\x04\x00\x01\x00\x00"
    room = 65507 - 12 - len(query) - 11 - 2 * len(ecs)
    return header(ar=1) + query + opt(options=b"\x00\x63\x00\x00" * (room // 4) + ecs * 2)


def pointer_chain() -> bytes:
    """A 64 KB chain of compression pointers in the additional section."""
    body = bytearray(header(ar=1) + b"\x01a\x00\x00\x01\x00\x01")
    first = len(body)
    while len(body) < 65000:
        body += struct.pack("!H", 0xC000 | (len(body) - 2 if len(body) > first else 12))
    return bytes(body)


#: The 64 KB packets that cost the most to read, by shape.
HUGE = (many_labels, many_options, pointer_chain)


def huge(rng: random.Random) -> bytes:
    """One of the :data:`HUGE` packets."""
    return rng.choice(HUGE)()


class Generator:
    """Fuzz packets: 75% mutated seeds, 20% random bytes, 5% seeds as they are, and one
    huge packet in ``huge_every``."""

    def __init__(self, seed: int, huge_every: int = 1000) -> None:
        self.rng = random.Random(seed)
        self.pool = seeds()
        self.huge_every = huge_every
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        rng = self.rng
        if self.count % self.huge_every == 0:
            return huge(rng)
        roll = rng.random()
        if roll < 0.75:
            return mutate(rng, rng.choice(self.pool), self.pool)
        if roll < 0.95:
            return os.urandom(rng.choice((rng.randint(0, 16), rng.randint(12, 64), rng.randint(0, 600))))
        return rng.choice(self.pool)


def with_id(data: bytes, ident: int) -> bytes:
    """``data`` with its ID set to ``ident`` (when it has two bytes for one)."""
    return struct.pack("!H", ident) + data[2:] if len(data) >= 2 else data


def expects_reply(data: bytes) -> bool:
    """The server answers every packet with a header and QR clear, and nothing else."""
    return len(data) >= 12 and not data[2] & 0x80


# -- checking replies ----------------------------------------------------------------------------------

@dataclass
class Tally:
    sent: int = 0
    replies: int = 0
    lost: int = 0
    unexpected: int = 0  # replies to packets that must be dropped
    unparseable: int = 0
    bad_id: int = 0
    bad_question: int = 0
    oversize: int = 0
    rcodes: "collections.Counter[str]" = field(default_factory=collections.Counter)
    samples: List[Tuple[str, bytes, bytes]] = field(default_factory=list)

    def fault(self, kind: str, sent: bytes, reply: bytes) -> None:
        if len(self.samples) < 20:
            self.samples.append((kind, sent[:200], reply[:200]))


def question_length(reply: bytes) -> int:
    """Length of the (uncompressed) question at offset 12 of a parsed reply."""
    position = 12
    while reply[position]:
        position += reply[position] + 1
    return position + 1 - 12 + 4


def edns_limit(sent: bytes) -> Optional[int]:
    """The client's EDNS size as dnspython reads the query, or None (unreadable, or no OPT)."""
    try:
        query = dns.message.from_wire(sent)
    except Exception:  # noqa: BLE001 - a fuzzed query may be anything
        return None
    return max(512, query.payload) if query.edns >= 0 else None


def check(tally: Tally, sent: bytes, reply: bytes, udp: bool) -> None:
    tally.replies += 1
    try:
        message = dns.message.from_wire(reply)
    except Exception:  # noqa: BLE001 - any parse failure counts
        tally.unparseable += 1
        tally.fault("unparseable", sent, reply)
        return
    tally.rcodes[dns.rcode.to_text(message.rcode())] += 1
    if message.id != struct.unpack("!H", sent[:2])[0]:
        tally.bad_id += 1
        tally.fault("id", sent, reply)
    qdcount = struct.unpack("!H", reply[4:6])[0]
    if qdcount == 1:
        length = question_length(reply)
        if reply[12:12 + length] != sent[12:12 + length]:
            tally.bad_question += 1
            tally.fault("question", sent, reply)
    elif qdcount > 1 or message.rcode() not in (dns.rcode.FORMERR, dns.rcode.NOTIMP):
        tally.bad_question += 1
        tally.fault("question missing", sent, reply)
    if udp:
        limit = 512 if message.edns < 0 else (edns_limit(sent) or 65535)
        if len(reply) > limit:
            tally.oversize += 1
            tally.fault("oversize", sent, reply)


# -- the server --------------------------------------------------------------------------------------

def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def rss_bytes(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) * 1024 if match else 0


def probe_query(ident: int = 0xBEEF) -> bytes:
    return with_id(dns.message.make_query(PROBE, "A").to_wire(), ident)


def probe_udp(port: int, timeout: float = 2.0) -> Optional[float]:
    """Seconds a fresh UDP socket waits for a valid answer, or None when none came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        started = time.perf_counter()
        sock.sendto(probe_query(), (LOOPBACK, port))
        try:
            while True:
                reply = sock.recv(65535)
                if reply[:2] == b"\xbe\xef":
                    return time.perf_counter() - started
        except socket.timeout:
            return None


def probe_tcp(port: int, timeout: float = 2.0) -> Optional[float]:
    started = time.perf_counter()
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            query = probe_query()
            sock.sendall(struct.pack("!H", len(query)) + query)
            read_exactly(sock, struct.unpack("!H", read_exactly(sock, 2))[0])
    except OSError:
        return None
    return time.perf_counter() - started


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@dataclass
class Liveness:
    probes: List[float] = field(default_factory=list)
    stalls: int = 0  # probes answered after more than 100 ms, or not at all

    def record(self, seconds: Optional[float]) -> None:
        if seconds is None or seconds > 0.1:
            self.stalls += 1
        self.probes.append(seconds if seconds is not None else float("inf"))


# -- UDP and TCP drivers ---------------------------------------------------------------------------------

def run_udp(port: int, generator: Generator, total: int, batch: int, window: int, tally: Tally,
            liveness: Liveness, after_batch: Callable[[int], None]) -> None:
    """Send ``total`` datagrams, ``window`` replies outstanding at most, matched in order
    (one socket, one single-threaded server: replies come back in the order sent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.connect((LOOPBACK, port))
    pending: Deque[Tuple[int, bytes]] = collections.deque()
    waiting: Dict[int, bytes] = {}
    ident = 0
    done = 0
    try:
        while done < total:
            end = min(total, done + batch)
            while done < end or pending:
                while done < end and len(pending) < window:
                    ident = (ident + 1) & 0xFFFF
                    data = with_id(generator.next()[:65507], ident)
                    done += 1
                    try:
                        sock.send(data)
                    except OSError:
                        continue  # an ICMP error from an earlier datagram: not the server's doing
                    tally.sent += 1
                    if expects_reply(data):
                        pending.append((ident, data))
                        waiting[ident] = data
                if not pending:
                    continue
                sock.settimeout(1.0)
                try:
                    reply = sock.recv(65535)
                except socket.timeout:
                    tally.lost += len(pending)
                    pending.clear()
                    waiting.clear()
                    continue
                except ConnectionRefusedError:
                    raise RuntimeError("the server stopped listening") from None
                rid = struct.unpack("!H", reply[:2])[0] if len(reply) >= 2 else -1
                if rid not in waiting:
                    tally.unexpected += 1
                    tally.fault("unexpected", b"", reply)
                    continue
                while pending[0][0] != rid:  # replies before it were lost
                    tally.lost += 1
                    del waiting[pending.popleft()[0]]
                pending.popleft()
                check(tally, waiting.pop(rid), reply, udp=True)
            liveness.record(probe_udp(port))
            after_batch(done)
    finally:
        sock.close()


def run_tcp(port: int, generator: Generator, total: int, batch: int, tally: Tally,
            liveness: Liveness, after_batch: Callable[[int], None], pipeline: int = 8,
            per_connection: int = 50) -> None:
    """Send ``total`` framed messages, ``per_connection`` per connection in groups of
    ``pipeline``; every tenth connection is followed by one that stops mid-message."""
    done = 0
    ident = 0
    connections = 0
    while done < total:
        end = min(total, done + batch)
        while done < end:
            connections += 1
            with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
                sent_here = 0
                while done < end and sent_here < per_connection:
                    group = []
                    for _ in range(min(pipeline, end - done)):
                        ident = (ident + 1) & 0xFFFF
                        group.append(with_id(generator.next(), ident))
                    done += len(group)
                    sent_here += len(group)
                    tally.sent += len(group)
                    try:
                        sock.sendall(b"".join(struct.pack("!H", len(d)) + d for d in group))
                        for data in group:
                            if expects_reply(data):
                                reply = read_exactly(sock, struct.unpack("!H", read_exactly(sock, 2))[0])
                                check(tally, data, reply, udp=False)
                    except (OSError, ConnectionError):
                        tally.lost += 1
                        break
            if connections % 10 == 0:
                with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
                    sock.sendall(b"\x01\x00" + os.urandom(50))  # 256 announced, 50 sent, then gone
        liveness.record(probe_tcp(port))
        after_batch(done)


def worst_packet_cost(port: int, rounds: int = 21) -> Tuple[float, float]:
    """The largest, over the :data:`HUGE` shapes, of the median round trip of the 64 KB packet
    minus that of a small query: an upper bound on the reactor time one big packet costs
    (seconds); and the slowest round trip of any of them."""
    small = probe_query(0x7777)
    costs: List[float] = []
    slowest = 0.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect((LOOPBACK, port))
        for shape in HUGE:
            big = with_id(shape(), 0x7777)
            times: Dict[bytes, List[float]] = {big: [], small: []}
            for _ in range(rounds):
                for data in (big, small):
                    started = time.perf_counter()
                    sock.send(data)
                    sock.recv(65535)
                    times[data].append(time.perf_counter() - started)
            costs.append(statistics.median(times[big]) - statistics.median(times[small]))
            slowest = max(slowest, max(times[big]))
    return max(costs), slowest


# -- main ------------------------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="OpenGSLB DNS network fuzz benchmark (bench/README.md)")
    parser.add_argument("--packets", type=int, default=1_000_000, help="UDP datagrams to send")
    parser.add_argument("--tcp-messages", type=int, default=None,
                        help="TCP messages to send (default: 2%% of --packets, at least 200)")
    parser.add_argument("--batch", type=int, default=10_000, help="UDP packets between liveness probes")
    parser.add_argument("--window", type=int, default=32, help="UDP replies outstanding at most")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server log)")
    args = parser.parse_args(argv)
    tcp_messages = args.tcp_messages if args.tcp_messages is not None else max(200, args.packets // 50)

    workdir = Path(tempfile.mkdtemp(prefix="opengslb-fuzz-"))
    procs = Processes(workdir)
    backends: Optional[Backends] = None
    port = free_port()
    try:
        backends = Backends([("127.0.10.1", BACKEND_PORT), ("127.0.10.2", BACKEND_PORT)])
        config = workdir / "opengslb.yaml"
        config.write_text(CONFIG.format(port=port, backend=BACKEND_PORT, closed=BACKEND_PORT + 1,
                                        data=workdir / "raft"))
        config.chmod(0o600)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
        server = procs.start("opengslb", [sys.executable, "-m", "opengslb", "--config", str(config)], None, env)
        deadline = time.monotonic() + 30
        while probe_udp(port, 0.3) is None:
            procs.check_alive("opengslb")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer:\n{procs.log_tail('opengslb')}")
        time.sleep(1.5)  # the first health checks
        generator = Generator(args.seed)
        udp, tcp = Tally(), Tally()
        liveness = Liveness()
        rss: Dict[str, int] = {}
        started = time.monotonic()

        def after_udp(done: int) -> None:
            procs.check_alive("opengslb")
            if "first" not in rss:
                rss["first"] = rss_bytes(server.pid)
            if done % (args.batch * 10) == 0 or done == args.packets:
                rate = done / (time.monotonic() - started)
                print(f"  udp {done:>9,} sent  {rate:>7,.0f}/s  replies {udp.replies:,}  lost {udp.lost}  "
                      f"unparseable {udp.unparseable}  stalls {liveness.stalls}  "
                      f"rss {rss_bytes(server.pid) / 2**20:.1f} MiB", flush=True)

        run_udp(port, generator, args.packets, args.batch, args.window, udp, liveness, after_udp)
        tcp_started = time.monotonic()

        def after_tcp(done: int) -> None:
            procs.check_alive("opengslb")
            print(f"  tcp {done:>9,} sent  replies {tcp.replies:,}  lost {tcp.lost}  "
                  f"unparseable {tcp.unparseable}  stalls {liveness.stalls}", flush=True)

        run_tcp(port, generator, tcp_messages, max(200, tcp_messages // 10), tcp, liveness, after_tcp)
        tcp_seconds = time.monotonic() - tcp_started
        worst, worst_max = worst_packet_cost(port)
        rss["last"] = rss_bytes(server.pid)
        procs.check_alive("opengslb")
        log = (workdir / "opengslb.log").read_text(errors="replace")
        tracebacks = log.count("Traceback")
        growth = (rss["last"] - rss.get("first", rss["last"])) / 2**20
        finite = [p for p in liveness.probes if p != float("inf")]

        print(f"\nUDP: {udp.sent:,} packets in {tcp_started - started:.0f} s, {udp.replies:,} replies, "
              f"{udp.lost} lost, {udp.unexpected} unexpected; rcodes {dict(udp.rcodes.most_common())}")
        print(f"TCP: {tcp.sent:,} messages in {tcp_seconds:.0f} s, {tcp.replies:,} replies, {tcp.lost} lost; "
              f"rcodes {dict(tcp.rcodes.most_common())}")
        results = {
            "tracebacks in the server log": (tracebacks, tracebacks == 0),
            "unparseable replies": (udp.unparseable + tcp.unparseable, udp.unparseable + tcp.unparseable == 0),
            "replies with a wrong ID": (udp.bad_id + tcp.bad_id, udp.bad_id + tcp.bad_id == 0),
            "replies not echoing the question": (udp.bad_question + tcp.bad_question,
                                                 udp.bad_question + tcp.bad_question == 0),
            "UDP replies over the size limit": (udp.oversize, udp.oversize == 0),
            "replies to packets that must be dropped": (udp.unexpected, udp.unexpected == 0),
            "stalls (probe > 100 ms or unanswered)": (liveness.stalls, liveness.stalls == 0),
            "slowest probe (ms)": (round(max(finite) * 1000, 1) if finite else None, True),
            "resident memory growth (MiB)": (round(growth, 1), growth < 20),
            "worst packet, round trip over a small query (ms)": (round(worst * 1000, 2), worst < 0.005),
            "worst packet, slowest round trip (ms)": (round(worst_max * 1000, 2), True),
        }
        print()
        for label, (value, ok) in results.items():
            print(f"  {'ok  ' if ok else 'FAIL'} {label}: {value}")
        for kind, sent, reply in udp.samples + tcp.samples:
            print(f"  sample {kind}: sent {sent.hex()} reply {reply.hex()}")
        if tracebacks:
            print(log[log.index("Traceback"):][:3000])
        if args.keep:
            print(f"\nwork directory kept: {workdir}")
        return 0 if all(ok for _, ok in results.values()) else 1
    finally:
        procs.stop_all()
        if backends is not None:
            backends.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
