"""The wire-level fast path: plain A/AAAA queries answered from prepared bytes.

Most queries an authoritative GSLB receives have the same shape: one
question, class IN, type A or AAAA, for a configured name, with or without a
plain EDNS0 OPT record.  For those, :class:`FastPath` skips the general
reader and encoder.  Whenever the answering view changes it prepares, per
(name, type), the answer record of every candidate already encoded; a query
then costs one ``bytes.find``, one dictionary lookup, the routing pick, two
counter updates and one ``bytes.join``::

    response = ID | flags+counts | question (client's bytes) | answer RR | OPT

It is the strict reader's fast case, not a way around it: a query is taken
only when its bytes are exactly header counts qd=1/an=0/ns=0/ar=0|1, a
prepared name's labels (ASCII case folded), type and class, then either the
end of the message or one root-owned OPT record (version 0, DO set or not,
options exactly filling its RDATA) ending the message.  Every such message
is well formed under :func:`opengslb.dns.wire.read_message` — prepared names
are valid label sequences, so the comparison also checks label lengths,
the name's length and the absence of compression — and a property test
checks that the two agree.  A label holding a ``.`` octet can never match a
prepared name, whose labels are compared byte for byte.

EDNS options are ignored, as the full path ignores them (so queries carrying
a client cookie, as dig and BIND send by default, are answered here too),
except NSID (RFC 5001), echoed when ``dns.nsid`` is set, and EDNS Client
Subnet (RFC 7871): read strictly here (a malformed one goes to the full
path, which answers FORMERR) and echoed with the answer's scope.

Client-aware domains (geolocation, consistent-hash) and multi-value answers
are answered here too: the entry's :class:`~opengslb.routing.steering.Steering`
takes the client — the ECS network, else the source address the listener
passes — and gives the addresses and the scope; for geolocation that is one
binary search over the prepared topology (answers are prepared per region
order, the client view).  The DO bit is
copied into the reply's OPT (RFC 3225).  Anything else — other opcodes,
several questions, other classes or types, EDNS version > 0, unknown names,
NODATA, every server down — makes :meth:`FastPath.respond` return ``None``
and the caller uses the full path (:class:`opengslb.dns.server.DNSResponder`),
so DNS semantics live in one place.  For every query it answers, the fast
path produces the bytes the full path produces for the same routing choice,
and counts it the same way.
"""

from __future__ import annotations

import socket
import struct
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from opengslb.dns.ecs import OPTION_ECS, EcsError, Subnet, ecs_option, parse_subnet, source_client
from opengslb.dns.reply import opt_record
from opengslb.dns.view import AAAA, A, AnsweringView, DomainView
from opengslb.dns.wire import MAX_OPTIONS, OPTION_COOKIE, OPTION_NSID
from opengslb.routing import Candidate
from opengslb.routing.base import NO_CLIENT
from opengslb.routing.steering import Steering
from opengslb.stats import QueryStats

__all__ = ["FastPath", "answer_record", "wire_name"]

_TYPES = ((4, A, "A"), (6, AAAA, "AAAA"))

# Query header counts: qd=1, an=0, ns=0, ar=0 (plain) or ar=1 (one OPT record).
_COUNTS_PLAIN = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"
# A plain OPT record in a query: root owner, type 41, any class (the client's
# UDP size), then TTL 0 (ext-rcode 0, version 0, DO clear) or with DO set, and rdlength 0.
_OPT_START = b"\x00\x00\x29"
_OPT_END = b"\x00\x00\x00\x00\x00\x00"
_OPT_END_DO = b"\x00\x00\x80\x00\x00\x00"
_OPT_TTLS = (b"\x00\x00\x00\x00", b"\x00\x00\x80\x00")  # [DO]: extended rcode 0, version 0, Z clear

# Response flags: QR=1, opcode QUERY, AA=1, TC=0, RD and CD copied, RA=0, Z/AD=0, rcode
# NOERROR; indexed by RD | CD >> 3 (the query's bits).  Then qd=1, an=1, ns=0 and ar=0|1.
_FLAGS = (b"\x84\x00", b"\x85\x00", b"\x84\x10", b"\x85\x10")
_ANSWER_COUNTS = (b"\x00\x01\x00\x01\x00\x00\x00\x00", b"\x00\x01\x00\x01\x00\x00\x00\x01")
# Our OPT echo (the full path's, see opengslb.dns.reply): indexed by the query's DO bit.
_OPT_ECHOES = (opt_record(0, False), opt_record(0, True))

_MAX_NAME = 255

RoutingKey = Tuple[str, str, str]
Signature = Tuple[int, str, Tuple[Tuple[str, int, int], ...]]


def wire_name(name: str) -> Optional[bytes]:
    """``name`` (lower case, no trailing dot) as uncompressed wire labels.

    ``None`` when it cannot be a DNS name the fast path serves: not ASCII, an
    empty or over-long label, a label holding a zero byte, or over 255 bytes.
    """
    try:
        labels = name.encode("ascii").split(b".")
    except UnicodeEncodeError:
        return None
    if any(not label or len(label) > 63 or b"\x00" in label for label in labels):
        return None
    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    return wire if len(wire) <= _MAX_NAME else None


def answer_record(address: str, ttl: int) -> bytes:
    """The encoded A/AAAA record for ``address``, owned by the question name.

    The owner is a compression pointer to offset 12 (the question), exactly
    as twisted.names compresses an answer whose owner is the question name.
    """
    if ":" in address:
        rtype, rdata = AAAA, socket.inet_pton(socket.AF_INET6, address)
    else:
        rtype, rdata = A, socket.inet_pton(socket.AF_INET, address)
    return b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


class _Entry:
    """One prepared (name, type): its picker and every candidate's encoded record.

    ``records[candidate.order]`` is (encoded answer, routing counter key) for
    the candidates of this family.  Keyed by ``order`` (the candidate's
    number in configuration order, unique within a domain), the records stay valid as
    long as the domain's signature does, so a rebuild after a health change
    only swaps in the new view's picker.
    """

    __slots__ = ("domain", "algorithm", "ttl", "query_key", "records", "pick", "steering", "simple")

    def __init__(self, domain: DomainView, type_label: str, candidates: Sequence[Candidate],
                 cache: Dict[Tuple[str, int], bytes]) -> None:
        self.domain = domain.name
        self.algorithm = domain.algorithm
        self.ttl = domain.ttl
        self.query_key = (domain.name, type_label, "NOERROR")
        self.records: Dict[int, Tuple[bytes, RoutingKey]] = {}
        for candidate in candidates:
            key = (candidate.address, domain.ttl)
            record = cache.get(key)
            if record is None:
                record = cache[key] = answer_record(candidate.address, domain.ttl)
            self.records[candidate.order] = (record, self.routing_key(candidate))
        self.pick: Callable[[], Optional[Candidate]] = _no_candidate
        self.steering: Optional[Steering] = None  # set with ``pick``: client-aware or multi-value answers
        self.simple = True  # an answer is one ``pick()`` (client-independent, one address)

    def routing_key(self, candidate: Candidate) -> RoutingKey:
        """The ``QueryStats.routing`` key of a decision for ``candidate``."""
        return (self.domain, self.algorithm, candidate.endpoint)

    def record_for(self, candidate: Candidate) -> Tuple[bytes, RoutingKey]:
        """(encoded answer, routing key) of ``candidate``, prepared or not."""
        found = self.records.get(candidate.order)
        if found is not None:
            return found
        return answer_record(candidate.address, self.ttl), self.routing_key(candidate)


def _no_candidate() -> Optional[Candidate]:
    return None


_NO_KEY: RoutingKey = ("", "", "")
_CACHE_LIMIT = 65_536  # parsed ECS options and encoded echoes kept (cleared when full)
_SEEN_LIMIT = 16_384  # queries remembered whole (:attr:`FastPath._seen`; cleared when full)
_SEEN_MAX_BYTES = 256  # longer queries are not remembered


class _Domain:
    """A domain's prepared entries: (entry, question bytes, family) per served family.

    ``signature`` is everything the encoded bytes depend on: TTL, algorithm
    and each candidate's (address, port, order) -- not health or weights.
    """

    __slots__ = ("signature", "entries", "source")

    def __init__(self, name: str, domain: DomainView, signature: Signature,
                 cache: Dict[Tuple[str, int], bytes]) -> None:
        self.signature = signature
        self.source = domain  # the DomainView whose pickers the entries use
        self.entries: List[Tuple[_Entry, bytes, int]] = []
        wire = wire_name(name) if name == name.lower() else None  # else the full path misses it too
        if wire is None:
            return
        for family, rtype, label in _TYPES:
            answer = domain.families.get(family)
            if answer is None or answer.configured == 0:
                continue  # NODATA: the full path's business
            candidates = [c for c in domain.candidates if (":" in c.address) == (family == 6)]
            self.entries.append((_Entry(domain, label, candidates, cache),
                                 wire + struct.pack("!HH", rtype, 1), family))

    def table_items(self) -> List[Tuple[bytes, "_Entry"]]:
        """This domain's (key, entry) pairs in :attr:`FastPath._table`: key = header counts +
        question, for queries without and with an OPT record."""
        return [(counts + question, entry) for entry, question, _ in self.entries
                for counts in (_COUNTS_PLAIN, _COUNTS_EDNS)]


def signature_of(domain: DomainView) -> Signature:
    """What a domain's prepared bytes depend on (not health, weights or pickers)."""
    return (domain.ttl, domain.algorithm,
            tuple([(c.address, c.port, c.order) for c in domain.candidates]))


def scan_options(data: bytes, start: int) -> int:
    """Check that ``data[start:]`` is an OPT record's RDLENGTH and RDATA, and nothing more:
    a sequence of (code, length, value) options that exactly fills RDLENGTH.

    Returns -1 when it is not (or holds more than MAX_OPTIONS options or a
    COOKIE of a wrong length: the full path answers FORMERR), else a bit set: 1 when the options include
    NSID (RFC 5001), and the offset of an EDNS Client Subnet option's data
    shifted left by 1 when there is exactly one (two ECS options: -1, the
    full path answers FORMERR).  Other options are not interpreted: like the
    full path (which ignores EDNS options it does not implement, as RFC 6891
    asks), the answer carries none but NSID and ECS.  So a query with a client cookie
    (RFC 7873, sent by dig and BIND by default) or any other option is
    answered here too.
    """
    size = len(data)
    if size < start + 2:
        return -1
    position = start + 2
    if position + (data[start] << 8 | data[start + 1]) != size:
        return -1
    found = 0
    budget = MAX_OPTIONS
    while position < size:
        if position + 4 > size or not budget:
            return -1
        budget -= 1
        if data[position] == 0:
            code = data[position + 1]
            if code == OPTION_NSID:
                found |= 1
            elif code == OPTION_COOKIE:
                length = data[position + 2] << 8 | data[position + 3]
                if length != 8 and not 16 <= length <= 40:
                    return -1  # malformed (RFC 7873 §5.2.2): the full path answers FORMERR
            elif code == OPTION_ECS:
                if found >> 1:
                    return -1
                found |= (position + 4) << 1
        position += 4 + (data[position + 2] << 8 | data[position + 3])
    return found if position == size else -1


class FastPath:
    """Answers plain A/AAAA queries for configured names from pre-encoded bytes.

    ``stats`` is the :class:`QueryStats` the full path counts into; each query
    answered here adds to the same ``queries`` and ``routing`` counters with
    the same keys ``count_query``/``count_routing`` use.  Call
    :meth:`rebuild` with every new view (``Gslb.add_view_listener``).  The
    fast path knows nothing of the cluster leader gate: ask it only while
    this node may answer with data.
    """

    def __init__(self, stats: QueryStats, view: Optional[AnsweringView] = None) -> None:
        self._queries = stats.queries
        self._routing = stats.routing
        self._domains: Dict[str, _Domain] = {}
        self._table: Dict[bytes, _Entry] = {}
        self._nsid_echoes: Optional[Tuple[bytes, bytes]] = None  # [DO] with our NSID; None: off
        self._nsid = b""
        self._ecs = stats  # counts queries carrying ECS (``ecs_queries``)
        self._subnets: Dict[bytes, Subnet] = {}  # ECS option data → parsed
        self._echoes: Dict[Tuple[Subnet, int, int], bytes] = {}  # (subnet, scope, DO|NSID) → our OPT
        # Query bytes after the ID → (pick, entry, the reply's bytes between its ID and answer
        # record, the OPT echo, whether it carries ECS) for one-address answers that the bytes
        # alone decide (client-independent, or steered by the query's ECS option): a repeated
        # query skips the parse and the steering and only picks.
        self._seen: Dict[bytes, Tuple[Callable[[], Optional[Candidate]], _Entry, bytes, bytes, bool]] = {}
        if view is not None:
            self.rebuild(view)

    @classmethod
    def from_view(cls, view: AnsweringView, stats: QueryStats) -> "FastPath":
        """A fast path prepared for ``view``."""
        return cls(stats, view)

    def __len__(self) -> int:
        """How many (name, type) pairs are prepared."""
        return len(self._table) // 2

    def rebuild(self, view: AnsweringView) -> None:
        """Prepare the answers of ``view``; replaces the previous table in one step.

        Domains whose :class:`DomainView` is the previous one's are left as
        they are.  Others whose signature is unchanged keep their encoded
        records and only take the new view's picker; new or changed domains
        are encoded afresh.  Only the table keys of domains that came, went or
        were re-encoded are touched, so a rebuild costs little more than one
        pass over the domains even with tens of thousands of them.
        """
        nsid = self._nsid = view.config.dns.nsid.encode("utf-8")
        self._nsid_echoes = ((opt_record(0, False, ((OPTION_NSID, nsid),)),
                              opt_record(0, True, ((OPTION_NSID, nsid),))) if nsid else None)
        previous = self._domains
        domains: Dict[str, _Domain] = {}
        fresh: List[_Domain] = []
        cache: Dict[Tuple[str, int], bytes] = {}
        for name, domain in view.domains.items():
            prepared = previous.get(name)
            if prepared is None or prepared.source is not domain:  # the view rebuilt this domain
                signature = signature_of(domain)
                if prepared is None or prepared.signature != signature:
                    prepared = _Domain(name, domain, signature, cache)
                    fresh.append(prepared)
                prepared.source = domain
                for entry, _, family in prepared.entries:
                    answer = domain.families[family]
                    entry.pick = answer.picker.pick
                    entry.steering = answer.steering
                    entry.simple = answer.steering is None or answer.steering.simple
            domains[name] = prepared
        table = dict(self._table)
        for name, old in previous.items():
            if domains.get(name) is not old:
                for key, _ in old.table_items():
                    del table[key]
        for prepared in fresh:
            table.update(prepared.table_items())
        self._domains = domains
        self._table = table
        self._seen = {}

    def respond(self, data: bytes, udp: bool = True, source: Optional[str] = None) -> Optional[bytes]:
        """The response to the raw query ``data``, or ``None``: use the full path.

        Answers only a query with QR=0, opcode QUERY, qd=1, an=ns=0, ar=0 or 1,
        one question (no compression) for a prepared name with type A/AAAA and
        class IN, optionally followed by an OPT record (version 0, DO set or
        not, any well-formed options, ignored but NSID and a well-formed ECS)
        and nothing else, when the routing algorithm has a healthy choice.
        ``source`` is the query's source address (the client of client-aware
        domains when the query has no ECS option).  ``udp`` is accepted for
        symmetry with the full path: these responses (at most 310 bytes plus
        an NSID of at most 128, an ECS echo of at most 24 and the further
        records of ``answer_count``, which the configuration bounds so they
        fit) always fit the client's UDP limit.  Never raises on malformed input.
        """
        remembered = data[2:]
        seen = self._seen.get(remembered)
        if seen is not None:  # the same query (but its ID) was answered here since the last rebuild
            pick, known, head, echo, with_ecs = seen
            chosen = pick()
            if chosen is None:
                return None
            if with_ecs:
                self._ecs.ecs_queries += 1
            try:
                record, routing_key = known.records[chosen.order]  # type: ignore[misc]
            except KeyError:
                record, routing_key = known.record_for(chosen)
            queries, routing, query_key = self._queries, self._routing, known.query_key
            queries[query_key] = queries.get(query_key, 0) + 1
            routing[routing_key] = routing.get(routing_key, 0) + 1
            return b"".join((data[:2], head, record, echo))
        # The first zero byte after the header ends the question name.  The
        # key is the header counts plus name, type and class, lower-cased.  If
        # it equals a prepared key, the query's labels are exactly that key's
        # labels: prepared names hold no zero byte, and lower() never changes
        # a count or length byte (all <= 63).  So data[11] (arcount) is 0 or 1.
        end = data.find(b"\x00", 12) + 5
        if end < 17:
            return None
        entry = self._table.get(data[4:end].lower())
        if entry is None or data[2] & 0xF8:  # unknown name/type/counts, QR set, opcode != 0
            return None
        ecs_at = 0
        if data[11]:
            if data[end:end + 3] != _OPT_START:
                return None
            tail = data[end + 5:]
            if tail == _OPT_END:
                echo = _OPT_ECHOES[0]
            elif tail == _OPT_END_DO:
                echo = _OPT_ECHOES[1]
            else:  # options after the TTL (or not a TTL we take)
                ttl = tail[:4]
                if ttl == _OPT_TTLS[0]:
                    dnssec_ok = 0
                elif ttl == _OPT_TTLS[1]:
                    dnssec_ok = 1
                else:
                    return None
                found = scan_options(data, end + 9)
                if found < 0:
                    return None
                nsid = self._nsid_echoes
                echo = nsid[dnssec_ok] if found & 1 and nsid is not None else _OPT_ECHOES[dnssec_ok]
                ecs_at = found
        elif len(data) != end:
            return None
        else:
            echo = b""
        if entry.simple and not ecs_at:
            chosen = entry.pick()
            if chosen is None:
                return None  # SERVFAIL or another all-down answer: the full path decides
            try:
                record, routing_key = entry.records[chosen.order]  # type: ignore[misc]
            except KeyError:
                record, routing_key = entry.record_for(chosen)
            counts = _ANSWER_COUNTS[data[11]]
            if len(data) <= _SEEN_MAX_BYTES:
                self._remember(remembered, entry.pick, entry, data, end, counts, echo, False)
        else:
            record, routing_key, counts, echo = self._steer(entry, data, end, ecs_at, source, echo, remembered)
            if not record:
                return None
        queries, routing, query_key = self._queries, self._routing, entry.query_key
        queries[query_key] = queries.get(query_key, 0) + 1
        routing[routing_key] = routing.get(routing_key, 0) + 1
        return b"".join((data[:2], _FLAGS[data[2] & 1 | data[3] >> 3 & 2], counts, data[12:end],
                         record, echo))

    def _remember(self, remembered: bytes, pick: Callable[[], Optional[Candidate]], entry: _Entry,
                  data: bytes, end: int, counts: bytes, echo: bytes, with_ecs: bool) -> None:
        """Keep a one-address answer the query's bytes decide (:attr:`_seen`; cleared when full)."""
        if len(self._seen) >= _SEEN_LIMIT:
            self._seen.clear()
        self._seen[remembered] = (pick, entry, _FLAGS[data[2] & 1 | data[3] >> 3 & 2] + counts + data[12:end],
                                  echo, with_ecs)

    def _steer(self, entry: _Entry, data: bytes, end: int, found: int, source: Optional[str], echo: bytes,
               remembered: bytes) -> Tuple[bytes, RoutingKey, bytes, bytes]:
        """A client-aware, multi-value or ECS answer: (records, routing key, counts, OPT echo).

        ``found`` is :func:`scan_options`' result (0 without options).  Empty
        records: the full path answers (nothing eligible, or a malformed ECS → FORMERR).
        Parsed ECS options and encoded echoes are cached by their bytes (bounded).
        """
        subnet = None
        ecs_at = found >> 1
        if ecs_at:
            raw = data[ecs_at:ecs_at + (data[ecs_at - 2] << 8 | data[ecs_at - 1])]
            subnet = self._subnets.get(raw)
            if subnet is None:
                try:
                    subnet = parse_subnet(raw)
                except EcsError:
                    return b"", _NO_KEY, b"", b""
                if len(self._subnets) >= _CACHE_LIMIT:
                    self._subnets.clear()
                self._subnets[raw] = subnet
        steering = entry.steering
        assert steering is not None
        if not steering.client_aware:
            client = NO_CLIENT
        elif subnet is not None and subnet.client is not None:
            client = subnet.client
        elif source is not None:
            try:
                client = source_client(source)
            except (OSError, ValueError):
                client = NO_CLIENT
        else:
            client = NO_CLIENT
        bound = None
        if len(data) <= _SEEN_MAX_BYTES and (not steering.client_aware or client is not NO_CLIENT and subnet
                                             is not None and subnet.client is not None):
            bound = steering.bound(client)  # the query's bytes decide the client: remember them
        chosen: Tuple[Candidate, ...]
        if bound is not None:
            one = bound[0]()
            chosen, scope = ((one,) if one is not None else ()), bound[1]
        else:
            chosen, scope = steering.select(client)
        if not chosen:
            return b"", _NO_KEY, b"", b""
        if subnet is not None:
            self._ecs.ecs_queries += 1
            key = (subnet, scope, data[end + 7] & 0x80 | found & 1)
            echo = self._echoes.get(key)  # type: ignore[assignment]
            if echo is None:
                options: Tuple[Tuple[int, bytes], ...] = ()
                if found & 1 and self._nsid:  # the query asked for our NSID
                    options = ((OPTION_NSID, self._nsid),)
                echo = opt_record(0, bool(data[end + 7] & 0x80), options + (ecs_option(subnet, scope),))
                if len(self._echoes) >= _CACHE_LIMIT:
                    self._echoes.clear()
                self._echoes[key] = echo
        if len(chosen) == 1:
            first = chosen[0]
            found_record = entry.records.get(first.order)
            record, routing_key = found_record if found_record is not None else entry.record_for(first)
            counts = _ANSWER_COUNTS[data[11]]
            if bound is not None:
                self._remember(remembered, bound[0], entry, data, end, counts, echo, subnet is not None)
            return record, routing_key, counts, echo
        records = [entry.records.get(c.order) or entry.record_for(c) for c in chosen]
        counts = b"\x00\x01" + struct.pack("!H", len(records)) + b"\x00\x00\x00" + bytes((data[11],))
        return b"".join(r for r, _ in records), records[0][1], counts, echo
