"""Why a client gets the answer it gets: a pure reading of the answering view.

:func:`explain` answers "for this name, type and client network, which
zone and domain, which topology rule or GeoIP record, which candidates (and
why each one is out), which answer, which ECS scope and which all-down
policy" — by asking the resolver with ``advance=False``, so it is the
answer the next query from that client would get, and no round-robin
position, smooth-weighted score or latency choice moves, and no counter or
log is touched.  The API's explain endpoint (SPEC §4.1) serves its result.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from twisted.names import dns

from opengslb.dns.ecs import source_client
from opengslb.dns.resolver import answer
from opengslb.dns.view import FAMILY_OF_TYPE, AnsweringView, DomainView
from opengslb.dns.wire import Question, name_from_text
from opengslb.routing.base import CLIENT_PREFIX_CAP, Candidate, Client

__all__ = ["Explained", "client_network", "explain", "explained"]

RCODE_TEXT = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPES = {"A": dns.A, "AAAA": dns.AAAA}


def client_network(client: str, subnet: Optional[int] = None) -> Client:
    """The routing client for an address and an optional ECS source prefix (capped as ECS is).

    Without ``subnet`` the address is the client, as for a query without ECS
    sent from it; a ``subnet`` of 0 too (an ECS source prefix of 0 names no
    network: the server then steers by the query's source address).
    Raises ValueError for a bad address or prefix.
    """
    address = ipaddress.ip_address(client)
    if not subnet:
        if subnet is not None and subnet < 0:
            raise ValueError(f"subnet must be between 0 and {address.max_prefixlen}")
        return source_client(str(address))
    bits = address.max_prefixlen
    if not 0 <= subnet <= bits:
        raise ValueError(f"subnet must be between 0 and {bits}")
    used = min(subnet, CLIENT_PREFIX_CAP[address.version])
    value = int(address) >> (bits - used) << (bits - used) if used else 0
    return address.version, value, used


def _network_text(client: Client) -> str:
    version, value, prefix = client
    address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
    return f"{address}/{prefix}"


@dataclass(frozen=True)
class Explained:
    """One explanation: the ``report`` (see :func:`explain`) and what it was made from.

    ``domain``: the configured domain the name hit (``None``: none);
    ``family``: 4 or 6, the asked type's; ``chosen``: the candidates in the
    answer (the algorithm's choice, or those an all-down policy answered).
    """

    report: Dict[str, Any]
    domain: Optional[DomainView]
    family: int
    chosen: Tuple[Candidate, ...]


def explain(view: AnsweringView, name: str, rtype: str, client: Client) -> Dict[str, Any]:
    """What ``view`` would answer ``client`` for ``name`` / ``rtype`` ("A" or "AAAA") now, and why.

    The result has the SPEC §4.1 shape but ``client`` (the caller knows how it
    asked) and ``node_verdicts`` (the served-health record's business):
    ``name``, ``type``, ``client_network``, ``zone``, ``domain``, ``algorithm``,
    ``matched``, ``candidates``, ``answer``, ``rcode``, ``ecs_scope``, ``policy``.
    Pure: nothing in ``view`` changes.  Raises ValueError for a name that is
    not a DNS name or a type other than A/AAAA.
    """
    return explained(view, name, rtype, client).report


def explained(view: AnsweringView, name: str, rtype: str, client: Client) -> Explained:
    """:func:`explain` with the domain, family and chosen candidates it found."""
    qtype = TYPES.get(rtype.upper())
    if qtype is None:
        raise ValueError("type must be A or AAAA")
    qname = name_from_text(name.lower().rstrip(".") or ".")
    question = Question(qname, qtype, dns.IN, qname.wire + struct.pack("!HH", qtype, dns.IN))
    result = answer(view, question, client=client, advance=False)
    zone = view.zone_for_name(qname)
    domain = result.domain
    family_number = FAMILY_OF_TYPE[qtype]
    candidates: List[Dict[str, Any]] = []
    matched = None
    if domain is not None:
        family = domain.families[family_number]
        if family.steering is not None:
            matched = family.steering.matched(client)
        chosen = {(c.region, c.address, c.port) for c in result.chosen}
        for candidate in domain.candidates:
            of_family = (":" in candidate.address) == (family_number == 6)
            if not of_family:
                reason: Optional[str] = f"not an IPv{family_number} address"
            elif (candidate.region, candidate.address, candidate.port) in chosen:
                reason = None
            elif not candidate.healthy:
                reason = "unhealthy"
            elif candidate.weight <= 0:
                reason = "effective weight 0"
            else:
                reason = "not chosen by " + domain.algorithm
            candidates.append({"region": candidate.region, "address": candidate.address,
                               "port": candidate.port, "healthy": candidate.healthy,
                               "effective_weight": candidate.weight, "excluded_because": reason})
    addresses = [_address_text(rr.payload) for rr in result.answers if rr.type in (dns.A, dns.AAAA)]
    report = {
        "name": name, "type": rtype.upper(), "client_network": _network_text(client),
        "zone": zone.name if zone is not None else None,
        "domain": domain.name if domain is not None else None,
        "algorithm": domain.algorithm if domain is not None else None,
        "matched": matched, "candidates": candidates, "answer": addresses,
        "rcode": RCODE_TEXT.get(result.rcode, str(result.rcode)),
        "ecs_scope": result.scope, "policy": result.policy,
    }
    return Explained(report, domain, family_number, tuple(result.chosen))


def _address_text(payload: Any) -> str:
    """The address of a twisted A or AAAA record (both keep it packed in ``address``)."""
    return str(ipaddress.ip_address(payload.address))
