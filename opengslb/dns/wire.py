"""The strict DNS wire reader: the first and only code that reads a request's bytes.

:func:`read_message` checks a whole message against RFC 1035 (and RFC 6891
for the OPT record) before anything else looks at it, the way knot and gdnsd
do:

* labels are at most 63 octets; length bytes 64–191 (reserved and obsolete
  label types, RFC 6891 §5) make the message malformed;
* a name is at most 255 octets, counted as it would be uncompressed;
* compression pointers point backwards only: every pointer of a name must
  point before the lowest position read so far for that name, so a name
  can never loop, and at most :data:`MAX_POINTERS` are followed per name;
* the counts match the message: every question and record the header
  announces is there, and nothing follows the last one;
* at most one OPT record, in the additional section, owned by the root,
  whose options exactly fill its RDATA, and at most :data:`MAX_OPTIONS`
  options in it (real queries carry one to three: a cookie, ECS, padding);
  a COOKIE option of 8 or 16-40 octets (RFC 7873 §5.2.2; other options are
  not interpreted here).

A message breaking any rule is returned with :attr:`Message.error` set (the
caller answers FORMERR), together with whatever could be read before the
fault — the question and the OPT record — so the FORMERR reply can carry them
(RFC 6891 §6.1.1).  A message shorter than the 12-byte header is ``None``:
there is nothing to reply to.

Cost: linear in the message size, and bounded far below it.  A name stops
being read at its 256th octet, a request may carry at most
:data:`MAX_RECORDS` records besides its question and one question, so a
65,535-byte message of 32,000 one-byte labels costs about as much as a
255-octet name.  Besides the question name itself (at most 255 octets) and
the OPT options, nothing is allocated per label.

Names are kept as label sequences (:class:`Name`): the question's wire bytes,
as received, plus the offset of each label.  They are never joined with dots
and split again, so a label holding a ``.`` octet cannot turn into two labels.

This module imports nothing from the rest of the package (and nothing from
twisted): it is the bottom floor of the DNS code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

__all__ = [
    "HEADER_SIZE", "MAX_NAME_OCTETS", "MAX_LABEL_OCTETS", "MAX_OPTIONS", "MAX_POINTERS", "MAX_RECORDS",
    "OPT", "OPTION_COOKIE", "OPTION_NSID", "Edns", "Message", "Name", "Question", "read_message", "read_request",
    "name_from_text",
]

HEADER_SIZE = 12
MAX_NAME_OCTETS = 255  # RFC 1035 §2.3.4, length bytes and the root's zero included
MAX_LABEL_OCTETS = 63
MAX_POINTERS = 127  # compression pointers followed in one name (a 255-octet name has <= 127 labels)
MAX_RECORDS = 16  # records besides the question a request may carry (OPT, TSIG, an IXFR SOA ...)
#: EDNS options an OPT record may carry; more is FORMERR.  A 64 KB OPT of 16,000 empty options
#: would otherwise cost milliseconds of reading per packet.
MAX_OPTIONS = 32

OPT = 41
OPTION_NSID = 3  # RFC 5001
OPTION_COOKIE = 10  # RFC 7873: 8 octets (client cookie) or 16-40 (client and server cookie)

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH


class Name:
    """A domain name as a label sequence: its uncompressed wire form and label offsets.

    ``wire`` is the name as received (letter case kept), uncompressed, ending
    with the root's zero octet: at most 255 octets when it came from
    :func:`read_message`.  ``key`` is ``wire`` with ASCII letters folded to
    lower case (RFC 4343: other octets compare exactly), the form every
    lookup uses.  ``offsets`` gives where each label's length byte is in
    ``wire``, leftmost label first (the root is not listed).
    """

    __slots__ = ("wire", "key", "offsets")

    def __init__(self, wire: bytes, offsets: Tuple[int, ...]) -> None:
        self.wire = wire
        self.key = wire.lower()
        self.offsets = offsets

    @classmethod
    def from_wire(cls, wire: bytes) -> "Name":
        """A name from uncompressed ``wire`` labels (trusted: as made by this module)."""
        offsets: List[int] = []
        position = 0
        while wire[position]:
            offsets.append(position)
            position += wire[position] + 1
        return cls(wire, tuple(offsets))

    def labels(self) -> Tuple[bytes, ...]:
        """The labels, leftmost first, as received."""
        wire = self.wire
        return tuple(wire[o + 1:o + 1 + wire[o]] for o in self.offsets)

    def lookup_text(self) -> Optional[str]:
        """The lower-case dotted form used to look the name up among configured names.

        ``None`` when no configured name can equal it: a label holds a ``.``
        octet or a non-ASCII octet (configured names are ASCII letters,
        digits, ``-`` and ``_``).  Joining with dots is safe otherwise: with
        no ``.`` inside a label, the dotted text determines the labels.
        The root name is ``""``.
        """
        key = self.key
        if not key.isascii():
            return None
        labels = [key[o + 1:o + 1 + key[o]] for o in self.offsets]
        if any(b"." in label for label in labels):
            return None
        return b".".join(labels).decode("ascii")

    def presentation(self) -> str:
        """The name in master-file text (RFC 1035 §5.1): ``.`` and ``\\`` escaped,
        other octets outside printable ASCII as ``\\DDD``; the root is ``.``."""
        parts = []
        for label in self.labels():
            text = []
            for octet in label:
                if octet in (0x2E, 0x5C, 0x22, 0x28, 0x29, 0x3B, 0x40, 0x24):  # . \ " ( ) ; @ $
                    text.append("\\" + chr(octet))
                elif 0x21 <= octet <= 0x7E:
                    text.append(chr(octet))
                else:
                    text.append(f"\\{octet:03d}")
            parts.append("".join(text))
        return ".".join(parts) + "." if parts else "."

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Name) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Name({self.presentation()!r})"


def name_from_text(text: str) -> Name:
    """A :class:`Name` from dotted text without escapes (a configured name, say).

    Raises ValueError for an empty label, a label over 63 octets or a name
    over 255 octets.  A trailing dot is allowed; ``""`` and ``"."`` are the root.
    """
    stripped = text[:-1] if text.endswith(".") else text
    labels = stripped.encode("ascii").split(b".") if stripped else []
    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    if any(not label or len(label) > MAX_LABEL_OCTETS for label in labels) or len(wire) > MAX_NAME_OCTETS:
        raise ValueError(f"not a DNS name: {text!r}")
    return Name.from_wire(wire)


@dataclass(frozen=True)
class Question:
    """One question: its name, type and class, and its bytes as received (name, type, class)."""

    name: Name
    qtype: int
    qclass: int
    wire: bytes


@dataclass(frozen=True)
class Edns:
    """What the request's OPT record says (RFC 6891 §6.1.2–6.1.3).

    ``options`` are (code, data) pairs in the order received; they are
    complete only when the message is well formed.
    """

    udp_size: int
    extended_rcode: int
    version: int
    dnssec_ok: bool
    options: Tuple[Tuple[int, bytes], ...] = ()

    def has_option(self, code: int) -> bool:
        return any(option == code for option, _ in self.options)


@dataclass(frozen=True)
class Message:
    """A message read by :func:`read_message`.

    ``error`` is ``None`` for a well-formed message, else why it is
    malformed.  ``question`` is the first question when it could be read,
    ``edns`` the OPT record when its fixed part could be read.
    ``opt_span`` is where the OPT record lies in the message (start, end).
    """

    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int
    question: Optional[Question]
    edns: Optional[Edns]
    error: Optional[str] = None
    opt_span: Optional[Tuple[int, int]] = None

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def recursion_desired(self) -> bool:
        return bool(self.flags & 0x0100)


class _Malformed(Exception):
    """Raised inside the reader; the message becomes FORMERR with this reason."""


def _read_name(data: bytes, position: int, end: int) -> Tuple[bytes, int]:
    """Read the name at ``position``: (uncompressed wire form, position after it).

    Raises :class:`_Malformed` for a reserved label type, a name over 255
    octets, a pointer that does not point backwards (below everything read
    so far for this name, and past the header), more than
    :data:`MAX_POINTERS` pointers, or a name running past ``end``.
    """
    octets = 0  # uncompressed length so far, length bytes included
    lowest = position  # pointers must go below every byte read for this name
    chunk = position  # start of the run of labels being read
    after: Optional[int] = None  # position after the name in the message (set at the first pointer)
    pieces: List[bytes] = []
    pointers = 0
    while True:
        if position >= end:
            raise _Malformed("name runs past the end of the message")
        length = data[position]
        if length == 0:
            position += 1
            if pieces:
                pieces.append(data[chunk:position])
                return b"".join(pieces), after  # type: ignore[return-value]
            return data[chunk:position], position
        if length <= MAX_LABEL_OCTETS:
            octets += length + 1
            if octets >= MAX_NAME_OCTETS:  # no room left for the root's zero octet
                raise _Malformed("name longer than 255 octets")
            position += length + 1
            continue
        if length < 0xC0:
            raise _Malformed(f"reserved label type 0x{length:02x}")
        if position + 1 >= end:
            raise _Malformed("compression pointer runs past the end of the message")
        target = (length & 0x3F) << 8 | data[position + 1]
        if target >= lowest or target < HEADER_SIZE:
            raise _Malformed("compression pointer does not point backwards into the message")
        pointers += 1
        if pointers > MAX_POINTERS:
            raise _Malformed("too many compression pointers")
        pieces.append(data[chunk:position])
        if after is None:
            after = position + 2
        position = chunk = lowest = target


def _label_offsets(wire: bytes) -> Tuple[int, ...]:
    offsets: List[int] = []
    position = 0
    while wire[position]:
        offsets.append(position)
        position += wire[position] + 1
    return tuple(offsets)


def _read_options(data: bytes, start: int, end: int) -> Tuple[Tuple[int, bytes], ...]:
    """The (code, data) options filling ``data[start:end]`` exactly, at most MAX_OPTIONS of them;
    _Malformed otherwise."""
    options: List[Tuple[int, bytes]] = []
    position = start
    while position < end:
        if len(options) == MAX_OPTIONS:
            raise _Malformed(f"more than {MAX_OPTIONS} EDNS options")
        if position + 4 > end:
            raise _Malformed("truncated EDNS option")
        code, length = struct.unpack_from("!HH", data, position)
        position += 4
        if position + length > end:
            raise _Malformed("EDNS option longer than the OPT record")
        if code == OPTION_COOKIE and length != 8 and not 16 <= length <= 40:
            raise _Malformed(f"COOKIE option of {length} octets (8, or 16 to 40)")
        options.append((code, data[position:position + length]))
        position += length
    return tuple(options)


def read_message(data: bytes) -> Optional[Message]:
    """Read and check a whole DNS message (query or response); see the module docstring.

    Returns ``None`` when ``data`` is shorter than a header.  Never raises.
    """
    size = len(data)
    if size < HEADER_SIZE:
        return None
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    question: Optional[Question] = None
    edns: Optional[Edns] = None
    opt_span: Optional[Tuple[int, int]] = None
    position = HEADER_SIZE
    try:
        if qdcount:
            wire, position = _read_name(data, position, size)
            if position + 4 > size:
                raise _Malformed("question runs past the end of the message")
            qtype, qclass = struct.unpack_from("!HH", data, position)
            question = Question(Name(wire, _label_offsets(wire)), qtype, qclass,
                                data[HEADER_SIZE:position + 4])
            position += 4
            if qdcount > 1:
                raise _Malformed("more than one question")
        records = ancount + nscount + arcount
        if records > MAX_RECORDS:
            raise _Malformed(f"{records} records in a request (at most {MAX_RECORDS})")
        additional_from = ancount + nscount
        for index in range(records):
            start = position
            if position < size and data[position] == 0:  # the root: the common owner of OPT
                owner_is_root = True
                position += 1
            else:
                owner, position = _read_name(data, position, size)
                owner_is_root = owner == b"\x00"
            if position + 10 > size:
                raise _Malformed("record runs past the end of the message")
            rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, position)
            position += 10
            rdata_end = position + rdlength
            if rtype == OPT:
                if index < additional_from:
                    raise _Malformed("OPT record outside the additional section")
                if edns is not None:
                    raise _Malformed("more than one OPT record")
                edns = Edns(udp_size=rclass, extended_rcode=ttl >> 24, version=(ttl >> 16) & 0xFF,
                            dnssec_ok=bool(ttl & 0x8000))
                if not owner_is_root:
                    raise _Malformed("OPT record not owned by the root")
                if rdata_end > size:
                    raise _Malformed("OPT record runs past the end of the message")
                edns = Edns(rclass, ttl >> 24, (ttl >> 16) & 0xFF, bool(ttl & 0x8000),
                            _read_options(data, position, rdata_end))
                opt_span = (start, rdata_end)
            elif rdata_end > size:
                raise _Malformed("record data runs past the end of the message")
            position = rdata_end
        if position != size:
            raise _Malformed(f"{size - position} octets after the last record")
    except _Malformed as error:
        return Message(ident, flags, qdcount, ancount, nscount, arcount, question, edns,
                       error=str(error))
    return Message(ident, flags, qdcount, ancount, nscount, arcount, question, edns,
                   opt_span=opt_span)


def read_request(data: bytes) -> Optional[Message]:
    """:func:`read_message` for a server: also ``None`` (drop) when QR is set (a response)."""
    if len(data) < HEADER_SIZE or data[2] & 0x80:
        return None
    return read_message(data)
