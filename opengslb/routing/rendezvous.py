"""Weighted rendezvous (highest-random-weight) hashing of client networks over servers.

Each (client network, server) pair gets a pseudo-random score; the client
goes to the server with the highest ``-weight / ln(u)`` where ``u`` in
(0, 1) comes from a hash of the pair (the weighted HRW of Schindelhauer and
Schomaker).  So a client's choice depends only on the servers present:
when one of N servers leaves, only the clients it had move (about 1/N of
them), and when it returns they come back — unlike ``hash % N``, which
remaps almost everyone.  Weights shift shares proportionally.
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")

_SCALE = float(1 << 64)


def score(client: bytes, server: bytes, weight: float) -> float:
    """The pair's score; higher wins.  ``weight <= 0`` never wins."""
    if weight <= 0:
        return -math.inf
    digest = hashlib.blake2b(client + b"\x00" + server, digest_size=8).digest()
    unit = (struct.unpack(">Q", digest)[0] + 0.5) / _SCALE  # in (0, 1)
    return -weight / math.log(unit)


def choose(client: bytes, candidates: Sequence[Tuple[bytes, float, T]]) -> Optional[T]:
    """The value of the highest-scoring ``(server id, weight, value)`` for ``client``; None if none."""
    best: Optional[T] = None
    best_score = -math.inf
    for server, weight, value in candidates:
        current = score(client, server, weight)
        if current > best_score:
            best, best_score = value, current
    return best
