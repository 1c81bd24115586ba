"""Who may call the API: source networks and bearer tokens (SPEC §9).

Pure functions, no Twisted: the Klein app feeds them the peer address, the
``X-Forwarded-For`` header and the current :class:`APIConfig`.

Source address
    The direct peer, unless ``trust_proxy_headers`` is on *and* the direct
    peer is in ``trusted_proxies``; then the client is taken from
    ``X-Forwarded-For`` (see :func:`client_address`).  Every address is
    normalised first: an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, what
    a dual-stack listener reports for an IPv4 client) becomes the IPv4
    address, so ``127.0.0.1/32`` in ``allowed_networks`` matches it.

Tokens
    ``Authorization: Bearer <token>``; the token is compared with *every*
    configured token using :func:`hmac.compare_digest`, so neither the time
    taken nor an early exit tells which token (or how much of one) matched.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Iterable, Optional, Sequence

from opengslb.config.model import APIConfig, IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["IPAddress", "parse_address", "client_address", "source_allowed", "bearer_token",
           "token_valid", "token_scope", "scope_allows", "SCOPES", "within"]

#: Token scopes, weakest first: ``drain`` may set and lift overrides and
#: register, renew and remove services (what an agent or a drain script
#: needs); ``admin`` may also reload the configuration and change cluster
#: membership.
SCOPES = ("drain", "admin")


def parse_address(text: str) -> Optional[IPAddress]:
    """``text`` as a normalised IP address, or ``None`` when it is not one.

    Accepts surrounding whitespace, ``[v6]``, ``[v6]:port`` and ``v4:port``
    (the forms proxies write into ``X-Forwarded-For``); drops an IPv6 zone
    (``%eth0``); turns an IPv4-mapped IPv6 address into its IPv4 address.
    """
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """True when ``address`` is inside one of ``networks`` (of its own family)."""
    return any(address.version == net.version and address in net for net in networks)


def client_address(peer: Optional[str], forwarded_for: Sequence[str],
                   settings: APIConfig) -> Optional[IPAddress]:
    """The address the request is judged by, or ``None`` when it cannot be known.

    :param peer: the direct peer's host (``request.getClientAddress().host``),
        ``None`` when the transport has no IP address.
    :param forwarded_for: every ``X-Forwarded-For`` header value, in order.
    :param settings: the current API settings.

    The header is honoured only when ``settings.trust_proxy_headers`` is true
    and the normalised peer is in ``settings.trusted_proxies``; otherwise the
    peer is the answer.  When honoured, the comma-separated entries of all
    header lines are read right to left (each proxy *appends* the address it
    saw): trusted proxies are skipped, and the first address that is not a
    trusted proxy is the client.  Entries further left were written by that
    untrusted client and are ignored, so a client cannot spoof its way in by
    sending its own header.  If every entry is a trusted proxy, the left-most
    one is the client.  An entry that is not an IP address (before the
    client was found) makes the client unknowable: ``None``.  An empty or
    absent header means the peer itself is the client.
    """
    if peer is None:
        return None
    direct = parse_address(peer)
    if direct is None:
        return None
    if not (settings.trust_proxy_headers and within(direct, settings.trusted_proxies)):
        return direct
    entries = [part for value in forwarded_for for part in value.split(",") if part.strip()]
    if not entries:
        return direct
    hop: Optional[IPAddress] = None
    for entry in reversed(entries):
        hop = parse_address(entry)
        if hop is None:
            return None
        if not within(hop, settings.trusted_proxies):
            return hop
    return hop


def source_allowed(address: Optional[IPAddress], settings: APIConfig) -> bool:
    """True when ``address`` is in one of ``settings.allowed_networks``."""
    return address is not None and within(address, settings.allowed_networks)


def bearer_token(authorization: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header value, else ``None``.

    The scheme is case-insensitive (RFC 7235); surrounding spaces are ignored.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_valid(token: Optional[str], tokens: Sequence[str]) -> bool:
    """True when ``token`` equals one of ``tokens``.

    Compared in constant time against every configured token (no early
    exit); ``None`` and an empty ``tokens`` are never valid.
    """
    if token is None:
        return False
    given = token.encode("utf-8")
    matched = False
    for candidate in tokens:
        matched |= hmac.compare_digest(given, candidate.encode("utf-8"))
    return matched


def token_scope(token: Optional[str], settings: APIConfig) -> Optional[str]:
    """The scope of ``token`` (``"admin"`` or ``"drain"``), ``None`` when it is not a token.

    Every configured token of both scopes is compared, in constant time.
    """
    admin = token_valid(token, settings.tokens)
    drain = token_valid(token, settings.drain_tokens)
    return "admin" if admin else "drain" if drain else None


def scope_allows(scope: Optional[str], needed: str) -> bool:
    """True when a token of ``scope`` may call a route that needs ``needed``."""
    if scope is None or scope not in SCOPES:
        return False
    return SCOPES.index(scope) >= SCOPES.index(needed)
