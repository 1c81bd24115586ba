"""A tiny MaxMind DB (MMDB format 2.0) writer for tests: networks → {country, continent} records.

It writes what the maxminddb reader needs and nothing more: an IPv6 search
tree of 32-bit records (IPv4 networks live at ``::a.b.c.d/96+n``, where
readers look for them), the data section (maps, strings, unsigned integers,
arrays) and the metadata.  Nested networks are allowed: a longer network
inside a shorter one overrides it there.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def _control(kind: int, size: int) -> bytes:
    if size < 29:
        head, extra = size, b""
    elif size < 285:
        head, extra = 29, bytes((size - 29,))
    elif size < 65821:
        head, extra = 30, struct.pack(">H", size - 285)
    else:
        head, extra = 31, struct.pack(">I", size - 65821)[1:]
    if kind <= 7:
        return bytes(((kind << 5) | head,)) + extra
    return bytes((head,)) + bytes((kind - 7,)) + extra


class Typed:
    """An unsigned integer of a given MMDB type (5 uint16, 6 uint32, 9 uint64), as metadata needs."""

    def __init__(self, kind: int, value: int) -> None:
        self.kind, self.value = kind, value


def encode(value: Any) -> bytes:
    """One data-section value (str, non-negative int, dict with str keys, list)."""
    if isinstance(value, Typed):
        raw = value.value.to_bytes((value.value.bit_length() + 7) // 8, "big") if value.value else b""
        return _control(value.kind, len(raw)) + raw
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _control(2, len(raw)) + raw
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, int):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
        kind = 5 if value < 1 << 16 else 6 if value < 1 << 32 else 9
        return _control(kind, len(raw)) + raw
    if isinstance(value, dict):
        return _control(7, len(value)) + b"".join(encode(k) + encode(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(value)


class _Node:
    __slots__ = ("children", "data")

    def __init__(self, data: Optional[int] = None) -> None:
        self.children: List[Optional["_Node"]] = [None, None]
        self.data = data  # data-section offset of a leaf, None: empty or inner


def _bits(network: Network) -> Tuple[int, int]:
    """(the network as a 128-bit value, prefix length in the IPv6 tree)."""
    if network.version == 4:
        return int(network.network_address), 96 + network.prefixlen
    return int(network.network_address), network.prefixlen


def write_mmdb(path: Path, records: Sequence[Tuple[Union[str, Network], Dict[str, Any]]],
               database_type: str = "Test-Country") -> Path:
    """Write ``records`` (network, record) to ``path``; returns ``path``.

    Shorter networks should come first when networks nest (later ones override
    inside them).
    """
    data = b""
    offsets: Dict[bytes, int] = {}
    root = _Node()
    for text, record in sorted(records, key=lambda item: _bits(ipaddress.ip_network(item[0]))[1]):
        network = ipaddress.ip_network(text)
        encoded = encode(record)
        if encoded not in offsets:
            offsets[encoded] = len(data)
            data += encoded
        value, length = _bits(network)
        node = root
        for depth in range(length):
            if node.data is not None:  # split a leaf: both halves keep its data
                node.children = [_Node(node.data), _Node(node.data)]
                node.data = None
            bit = (value >> (127 - depth)) & 1
            child = node.children[bit]
            if child is None:
                child = node.children[bit] = _Node()
            node = child
        node.children = [None, None]
        node.data = offsets[encoded]
    # Number the inner nodes breadth first; leaves become data pointers.
    inner: List[_Node] = []
    queue = [root]
    while queue:
        node = queue.pop(0)
        if node.data is not None:
            continue
        inner.append(node)
        queue.extend(child for child in node.children if child is not None and child.data is None)
    if not inner:
        inner = [root]
    index = {id(node): i for i, node in enumerate(inner)}
    count = len(inner)

    def record_of(child: Optional[_Node]) -> int:
        if child is None:
            return count  # empty
        if child.data is not None:
            return count + 16 + child.data
        return index[id(child)]

    tree = b"".join(struct.pack(">II", record_of(n.children[0]), record_of(n.children[1])) for n in inner)
    metadata = {
        "node_count": Typed(6, count), "record_size": Typed(5, 32), "ip_version": Typed(5, 6),
        "database_type": database_type, "languages": ["en"],
        "binary_format_major_version": Typed(5, 2), "binary_format_minor_version": Typed(5, 0),
        "build_epoch": Typed(9, 1_700_000_000), "description": {"en": "OpenGSLB test database"},
    }
    path.write_bytes(tree + b"\x00" * 16 + data + _METADATA_MARKER + encode(metadata))
    return path


def country(code: str, continent: str) -> Dict[str, Any]:
    """A GeoLite2-Country-shaped record."""
    return {"continent": {"code": continent}, "country": {"iso_code": code}}
