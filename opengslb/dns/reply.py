"""Reply bytes for a request read by :mod:`opengslb.dns.wire`.

:func:`encode_reply` writes the header, the question exactly as the client
sent it, the record sections (twisted.names records) and the OPT record, and
fits the result into the client's size limit.  The question's name travels
as a label sequence: :class:`WireName` is a twisted ``Name`` that encodes
the received labels byte for byte, so a label holding a ``.`` octet is never
split, and records owned by the question name point back at it (``c0 0c``).

Rules kept here, in one place:

* the reply copies the ID, the opcode, RD and CD; QR is set; AA as the answer says;
  the question is repeated as received (for UPDATE only a well-formed zone
  section: one SOA entry, RFC 2136 §3.1.1);
* an OPT record is present exactly when the request had one (RFC 6891
  §6.1.1), also on FORMERR, NOTIMP and REFUSED; it advertises
  :data:`ADVERTISED_UDP_SIZE`, carries the upper bits of the rcode
  (BADVERS), the DO bit copied from the request (RFC 3225 §3), and the NSID
  option when one is configured and the request asked for it (RFC 5001);
* over UDP the reply never exceeds the client's EDNS size, or 512 octets
  without EDNS: the additional section goes first, then every record, with
  TC set (RFC 2181 §9); the question and the OPT record always stay.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any, Dict, Optional, Sequence, Tuple

from twisted.names import dns

from opengslb.dns.wire import HEADER_SIZE, MAX_NAME_OCTETS, OPT, OPTION_NSID, Message, Name, Question

__all__ = ["ADVERTISED_UDP_SIZE", "MIN_UDP_SIZE", "FORWARDED_OPTION", "WireName", "encode_reply",
           "header_only", "opt_record", "record", "reply_limit"]

ADVERTISED_UDP_SIZE = 1232  # the DNS flag day 2020 recommendation
MIN_UDP_SIZE = 512
FORWARDED_OPTION = 65430  # private-use EDNS option marking a query relayed by a follower

_QR, _AA, _TC = 0x8000, 0x0400, 0x0200
OPCODE_UPDATE = 5
_META_CLASSES = (254, 255)  # NONE, ANY
_COPIED_FLAGS = 0x7910  # opcode, RD and CD (RFC 4035 §3.1.6; knot and gdnsd copy CD too)
_HEADER = struct.Struct("!HHHHHH")
_POINTER_LIMIT = 0x4000  # compression pointers reach the first 16 KiB only


class WireName(dns.Name):
    """A received name as a twisted ``Name``: encodes its labels exactly as received.

    ``name`` (twisted's text form) is the master-file presentation without the
    final dot, for logs and for code comparing twisted names.  In a message,
    the first occurrence is written uncompressed and every later one as a
    pointer to it; names twisted encodes afterwards (configured names) may
    point into its suffixes, but only into suffixes where no label holds a
    ``.`` octet, so dotted text always means the same labels.
    """

    def __init__(self, name: Name) -> None:
        self.wire_name = name
        text = name.presentation()
        self.name = (text[:-1] if text != "." else "").encode("ascii")

    def encode(self, strio: Any, compDict: Optional[Dict[Any, int]] = None) -> None:
        name = self.wire_name
        if compDict is not None:
            key = ("wire", name.wire)
            at = compDict.get(key)
            if at is not None:
                strio.write(struct.pack("!H", 0xC000 | at))
                return
            start = strio.tell() + HEADER_SIZE
            if start < _POINTER_LIMIT and len(name.wire) <= MAX_NAME_OCTETS:  # bounded work
                compDict[key] = start
                labels = name.labels()
                for index in range(len(labels) - 1, -1, -1):
                    if b"." in labels[index]:
                        break  # this suffix and every longer one would be misread as text
                    compDict.setdefault(b".".join(labels[index:]), start + name.offsets[index])
        strio.write(name.wire)


def record(owner: dns.Name, rtype: int, ttl: int, payload: Any, rclass: int = dns.IN) -> dns.RRHeader:
    """A twisted record owned by ``owner`` (a :class:`WireName` is kept as it is)."""
    header = dns.RRHeader(name=b"", type=rtype, cls=rclass, ttl=ttl, auth=True, payload=payload)
    header.name = owner
    return header


def reply_limit(request: Message, max_size: Optional[int]) -> Optional[int]:
    """The reply size limit: ``None`` over TCP (``max_size`` None); over UDP the client's
    EDNS size, at least 512 (RFC 6891 §6.2.5), or 512 without EDNS (RFC 1035 §4.2.1)."""
    if max_size is None:
        return None
    if request.edns is None:
        return MIN_UDP_SIZE
    return max(MIN_UDP_SIZE, request.edns.udp_size)


def opt_record(rcode: int, dnssec_ok: bool, options: Sequence[Tuple[int, bytes]] = ()) -> bytes:
    """Our OPT record: root owner, our UDP size, extended rcode, version 0, DO, ``options``."""
    rdata = b"".join(struct.pack("!HH", code, len(value)) + value for code, value in options)
    return (b"\x00" + struct.pack("!HHBBHH", OPT, ADVERTISED_UDP_SIZE, (rcode >> 4) & 0xFF, 0,
                                  0x8000 if dnssec_ok else 0, len(rdata)) + rdata)


def _opt_for(request: Message, rcode: int, nsid: bytes, ecs: Optional[Tuple[int, bytes]] = None) -> bytes:
    edns = request.edns
    if edns is None:
        return b""
    options: Tuple[Tuple[int, bytes], ...] = (
        ((OPTION_NSID, nsid),) if nsid and edns.has_option(OPTION_NSID) else ())
    if ecs is not None:
        options += (ecs,)
    return opt_record(rcode, edns.dnssec_ok, options)


def _records(question: Optional[Question], sections: Sequence[Sequence[dns.RRHeader]]) -> bytes:
    """The question and ``sections`` encoded after a 12-byte header (compression offsets
    count from the header's start, as twisted's ``Name.encode`` expects)."""
    strio = BytesIO()
    compression: Dict[Any, int] = {}
    if question is not None:
        WireName(question.name).encode(strio, compression)
        strio.write(question.wire[-4:])
    for section in sections:
        for rr in section:
            rr.encode(strio, compression)
    return strio.getvalue()


def _echoable(request: Message) -> bool:
    """Whether the reply may repeat the request's question.

    Always, but for UPDATE (RFC 2136 §3.1.1), whose first section is the
    zone section: one SOA-typed entry of a real class.  Anything else there
    makes the request malformed, and echoing it would make our reply
    malformed too, so such replies carry no question.
    """
    question = request.question
    if question is None:
        return False
    return request.opcode != OPCODE_UPDATE or (question.qtype == dns.SOA
                                                and question.qclass not in _META_CLASSES)


def encode_reply(request: Message, rcode: int, *, authoritative: bool = False,
                 answers: Sequence[dns.RRHeader] = (), authority: Sequence[dns.RRHeader] = (),
                 additional: Sequence[dns.RRHeader] = (), limit: Optional[int] = None,
                 nsid: bytes = b"", ecs: Optional[Tuple[int, bytes]] = None) -> bytes:
    """The reply to ``request`` with ``rcode`` and the given sections, at most ``limit`` bytes.

    ``limit`` is ``None`` over TCP (the reply is then at most 65,535 bytes
    only if the sections are: callers answer far less).  When the reply does
    not fit, the additional section is dropped first; if it still does not
    fit, every record section is emptied and TC set.  The question and the
    OPT record stay (with a 255-octet name they always fit in 512 bytes).
    ``ecs`` is the EDNS Client Subnet option (code, data) to echo (RFC 7871),
    after NSID.
    """
    question = request.question if _echoable(request) else None
    flags = _QR | (request.flags & _COPIED_FLAGS) | (_AA if authoritative else 0) | (rcode & 0xF)
    opt = _opt_for(request, rcode, nsid, ecs)
    qdcount = 1 if question is not None else 0
    arcount = 1 if opt else 0
    if answers or authority or additional:
        body = _records(question, (answers, authority, additional))
        wire = _HEADER.pack(request.id, flags, qdcount, len(answers), len(authority),
                            len(additional) + arcount) + body + opt
        if limit is None or len(wire) <= limit:
            return wire
        if additional:
            body = _records(question, (answers, authority))
            wire = _HEADER.pack(request.id, flags, qdcount, len(answers), len(authority),
                                arcount) + body + opt
            if len(wire) <= limit:
                return wire
        flags |= _TC
    wire = (_HEADER.pack(request.id, flags, qdcount, 0, 0, arcount)
            + (question.wire if question is not None else b"") + opt)
    if limit is not None and len(wire) > limit:  # cannot happen with names of <= 255 octets
        return _HEADER.pack(request.id, flags | _TC, 0, 0, 0, 0)
    return wire


def header_only(data: bytes, rcode: int) -> bytes:
    """A reply echoing only the ID, opcode and RD of ``data`` (at least 12 bytes)."""
    ident, flags = struct.unpack_from("!HH", data)
    return _HEADER.pack(ident, _QR | (flags & _COPIED_FLAGS) | (rcode & 0xF), 0, 0, 0, 0)
