"""Keys derived from the one cluster secret (``cluster.gossip.encryption_key``).

Raft's transport and the gossip channel each get their own key, derived with
HKDF-SHA256 under a purpose label, so a key recovered from one protocol says
nothing about the other.  The derivation lives here, beside the Raft adapter
(:mod:`opengslb.state.raft`), on the floor below the cluster code that also
uses it (gossip).
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RAFT = b"opengslb raft transport v1"
GOSSIP = b"opengslb gossip v1"


def derive_key(encryption_key_b64: str, purpose: bytes, length: int = 32) -> bytes:
    """``length`` bytes for ``purpose`` from the base64 cluster key (validated by the config)."""
    secret = base64.b64decode(encryption_key_b64)
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose).derive(secret)


def raft_password(encryption_key_b64: str) -> str:
    """The password handed to pysyncobj's transport (it stretches it into a Fernet key)."""
    return base64.b64encode(derive_key(encryption_key_b64, RAFT)).decode("ascii")
