"""The wire-level fast path: plain A/AAAA queries answered from prepared bytes.

Most queries an authoritative GSLB receives have the same shape: one
question, class IN, type A or AAAA, for a configured name, with or without a
plain EDNS0 OPT record.  For those, :class:`FastPath` skips the twisted.names
parse and encode.  Whenever the answering view changes it prepares, per
(name, type), the answer record of every candidate already encoded; a query
then costs one ``bytes.find``, one dictionary lookup, the routing pick, two
counter updates and one ``bytes.join``::

    response = ID | flags+counts | question (client's bytes) | answer RR | OPT

Anything else — other opcodes, several questions, other classes or types,
EDNS options or the DO bit, unknown names, NODATA, every server down — makes
:meth:`FastPath.respond` return ``None`` and the caller uses the full path
(:class:`opengslb.dns.server.DNSResponder`), so DNS semantics live in one
place.  For every query it answers, the fast path produces the bytes the full
path produces for the same routing choice, and counts it the same way.
"""

from __future__ import annotations

import socket
import struct
from typing import Callable, Dict, Optional, Tuple

from opengslb.dns.server import ADVERTISED_UDP_SIZE, QueryStats
from opengslb.dns.view import AAAA, A, AnsweringView, DomainView
from opengslb.routing import Candidate

__all__ = ["FastPath", "answer_record", "wire_name"]

_TYPES = ((4, A, "A"), (6, AAAA, "AAAA"))

# Query header counts: qd=1, an=0, ns=0, ar=0 (plain) or ar=1 (one OPT record).
_COUNTS_PLAIN = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"
# A plain OPT record in a query: root owner, type 41, any class (the client's
# UDP size), then TTL 0 (ext-rcode 0, version 0, no DO) and rdlength 0.
_OPT_START = b"\x00\x00\x29"
_OPT_END = b"\x00\x00\x00\x00\x00\x00"

# Response flags: QR=1, opcode QUERY, AA=1, TC=0, RD copied (index), RA=0,
# Z/AD/CD=0, rcode NOERROR.  Then qd=1, an=1, ns=0 and ar=0|1.
_FLAGS = (b"\x84\x00", b"\x85\x00")
_ANSWER_COUNTS = (b"\x00\x01\x00\x01\x00\x00\x00\x00", b"\x00\x01\x00\x01\x00\x00\x00\x01")
# Our OPT echo: root owner, type 41, class = advertised UDP size, TTL 0, rdlength 0.
_OPT_ECHO = _OPT_START + struct.pack("!H", ADVERTISED_UDP_SIZE) + b"\x00" * 6

_MAX_NAME = 255

RoutingKey = Tuple[str, str, str]


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


class _Answers:
    """One (name, type): its picker and every candidate's prepared record.

    ``records`` maps ``id(candidate)`` to (encoded answer, routing counter
    key): pickers hand back the very Candidate objects the view was built
    with, and an int key is far cheaper than hashing a dataclass.
    ``candidates`` keeps those objects, and so their ids, alive.
    """

    __slots__ = ("domain", "algorithm", "ttl", "pick", "candidates", "records", "query_key")

    def __init__(self, domain: DomainView, type_label: str, pick: Callable[[], Optional[Candidate]],
                 candidates: Tuple[Candidate, ...], cache: Dict[Tuple[str, int], bytes]) -> None:
        self.domain = domain.name
        self.algorithm = domain.algorithm
        self.ttl = domain.ttl
        self.pick = pick
        self.candidates = candidates
        self.query_key = (domain.name, type_label, "NOERROR")
        self.records: Dict[int, Tuple[bytes, RoutingKey]] = {}
        for candidate in candidates:
            key = (candidate.address, domain.ttl)
            record = cache.get(key)
            if record is None:
                record = cache[key] = answer_record(candidate.address, domain.ttl)
            self.records[id(candidate)] = (record, self.routing_key(candidate))

    def routing_key(self, candidate: Candidate) -> RoutingKey:
        """The ``QueryStats.routing`` key of a decision for ``candidate``."""
        return (self.domain, self.algorithm, candidate.endpoint)

    def record_for(self, candidate: Candidate) -> Tuple[bytes, RoutingKey]:
        """(encoded answer, routing key) of ``candidate``, prepared or not."""
        found = self.records.get(id(candidate))
        if found is not None:
            return found
        return answer_record(candidate.address, self.ttl), self.routing_key(candidate)


class _Entry:
    """One table row: a (name, type) with or without an OPT record in the query."""

    __slots__ = ("answers", "pick", "records", "query_key", "edns", "counts", "opt")

    def __init__(self, answers: _Answers, edns: bool) -> None:
        self.answers = answers
        self.pick = answers.pick
        self.records = answers.records
        self.query_key = answers.query_key
        self.edns = edns
        self.counts = _ANSWER_COUNTS[edns]
        self.opt = _OPT_ECHO if edns else b""


class FastPath:
    """Answers plain A/AAAA queries for configured names from pre-encoded bytes.

    ``stats`` is the :class:`QueryStats` the full path counts into; each query
    answered here adds to the same ``queries`` and ``routing`` counters with
    the same keys ``count_query``/``count_routing`` use.  Call
    :meth:`rebuild` with every new view (``Gslb.add_view_listener``).
    """

    def __init__(self, stats: QueryStats, view: Optional[AnsweringView] = None) -> None:
        self._queries = stats.queries
        self._routing = stats.routing
        self._table: Dict[bytes, _Entry] = {}
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

        Cost is proportional to the number of domains and candidates: two
        rows per (domain, family with at least one configured server), one
        encoded record per distinct (address, TTL).
        """
        table: Dict[bytes, _Entry] = {}
        cache: Dict[Tuple[str, int], bytes] = {}
        for name, domain in view.domains.items():
            if name != name.lower():
                continue  # the full path would not find it either
            wire = wire_name(name)
            if wire is None:
                continue
            for family, rtype, label in _TYPES:
                family_answer = domain.families.get(family)
                if family_answer is None or family_answer.configured == 0:
                    continue  # NODATA: the full path's business
                candidates = tuple(c for c in domain.candidates
                                   if (":" in c.address) == (family == 6))
                answers = _Answers(domain, label, family_answer.picker.pick, candidates, cache)
                question = wire + struct.pack("!HH", rtype, 1)
                table[_COUNTS_PLAIN + question] = _Entry(answers, edns=False)
                table[_COUNTS_EDNS + question] = _Entry(answers, edns=True)
        self._table = table

    def respond(self, data: bytes, udp: bool = True) -> Optional[bytes]:
        """The response to the raw query ``data``, or ``None``: use the full path.

        Answers only a query with QR=0, opcode QUERY, qd=1, an=ns=0, ar=0 or 1,
        one question (no compression) for a prepared name with type A/AAAA and
        class IN, optionally followed by a plain OPT record (version 0, no DO,
        no options) and nothing else, when the routing algorithm has a healthy
        choice.  ``udp`` is accepted for symmetry with the full path: these
        responses (at most 310 bytes) always fit the 512-byte UDP minimum.
        Never raises on malformed input.
        """
        # The first zero byte after the header ends the question name.  The
        # key is the header counts plus name, type and class, lower-cased.  If
        # it equals a prepared key, the query's labels are exactly that key's
        # labels: prepared names hold no zero byte, and lower() never changes
        # a count or length byte (all <= 63).
        end = data.find(b"\x00", 12) + 5
        if end < 17:
            return None
        entry = self._table.get(data[4:end].lower())
        if entry is None or data[2] & 0xF8:  # unknown name/type/counts, QR set, opcode != 0
            return None
        if entry.edns:
            if data[end:end + 3] != _OPT_START or data[end + 5:] != _OPT_END:
                return None
        elif len(data) != end:
            return None
        chosen = entry.pick()
        if chosen is None:
            return None  # SERVFAIL or a stale answer: the full path decides
        prepared = entry.records.get(id(chosen))
        record, routing_key = prepared if prepared is not None else entry.answers.record_for(chosen)
        queries, routing, query_key = self._queries, self._routing, entry.query_key
        queries[query_key] = queries.get(query_key, 0) + 1
        routing[routing_key] = routing.get(routing_key, 0) + 1
        return b"".join((data[:2], _FLAGS[data[2] & 1], entry.counts, data[12:end], record,
                         entry.opt))
