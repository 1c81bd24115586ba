"""Authoritative answers: the zone semantics, in one place.

:func:`answer` turns one question into an :class:`Answer` — rcode, the three
record sections and what was routed — from an :class:`AnsweringView`.  It
knows NXDOMAIN from NODATA from REFUSED (SPEC §3, RFC 2308, RFC 8020); the
server module only deals with wire format and transports.
:class:`ViewResolver` offers the same answers as a twisted.names
``IResolver`` for code that wants one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet import defer
from twisted.names import common, dns, error

from opengslb.dns.view import FAMILY_OF_TYPE, AnsweringView, DomainView, ZoneView
from opengslb.routing import Candidate

OTHER_DOMAIN = "_other"  # metrics label for names that are not configured domains


@dataclass
class Answer:
    """One authoritative (or refused) answer.

    ``domain`` is the configured domain the question hit (or ``None``);
    ``routed`` the candidate chosen by the routing algorithm; ``stale`` is
    true when ``return_last_healthy`` supplied an address.
    """

    rcode: int
    answers: List[dns.RRHeader]
    authority: List[dns.RRHeader]
    additional: List[dns.RRHeader]
    authoritative: bool
    domain: Optional[DomainView] = None
    routed: Optional[Candidate] = None
    stale: bool = False


def _refused() -> Answer:
    return Answer(dns.EREFUSED, [], [], [], authoritative=False)


def soa_record(owner: bytes, zone: ZoneView, ttl: int) -> dns.RRHeader:
    soa = zone.config.soa
    return dns.RRHeader(
        name=owner, type=dns.SOA, cls=dns.IN, ttl=ttl, auth=True,
        payload=dns.Record_SOA(mname=soa.mname, rname=soa.rname, serial=serial_of(zone),
                               refresh=soa.refresh, retry=soa.retry, expire=soa.expire,
                               minimum=soa.minimum, ttl=ttl))


def serial_of(zone: ZoneView) -> int:
    """SOA serial: fixed at 1.

    The zone is synthesised from live state and never transferred, so
    secondaries never compare serials (gdnsd does the same for its dynamic
    records).
    """
    return 1


def address_record(owner: bytes, address: str, ttl: int) -> dns.RRHeader:
    payload: Any
    if ":" in address:
        payload = dns.Record_AAAA(address, ttl=ttl)
        rtype = dns.AAAA
    else:
        payload = dns.Record_A(address, ttl=ttl)
        rtype = dns.A
    return dns.RRHeader(name=owner, type=rtype, cls=dns.IN, ttl=ttl, auth=True, payload=payload)


def _negative(rcode: int, zone: ZoneView, domain: Optional[DomainView] = None) -> Answer:
    apex = zone.name.encode("ascii")
    return Answer(rcode, [], [soa_record(apex, zone, zone.negative_ttl)], [],
                  authoritative=True, domain=domain)


def _nameserver_answer(owner: bytes, view: AnsweringView, zone: ZoneView
                       ) -> Tuple[List[dns.RRHeader], List[dns.RRHeader]]:
    ttl = zone.soa_ttl
    answers = [dns.RRHeader(name=owner, type=dns.NS, cls=dns.IN, ttl=ttl, auth=True,
                            payload=dns.Record_NS(ns.name, ttl=ttl))
               for ns in zone.config.nameservers]
    additional = [address_record(ns.name.encode("ascii"), address, ttl)
                  for ns in zone.config.nameservers for address in view.glue.get(ns.name, ())]
    return answers, additional


StaleHook = Callable[[DomainView, Candidate], None]


def answer(view: AnsweringView, qname: bytes, qtype: int, qclass: int = dns.IN,
           on_stale: Optional[StaleHook] = None) -> Answer:
    """Answer one question from ``view``.

    ``qname`` is the name as the client sent it; answers are owned by that
    exact spelling so the client's letter case is echoed.  ``on_stale`` is
    called when a last-healthy address is served because every candidate is
    down.
    """
    try:
        name = qname.decode("ascii").lower().rstrip(".")
    except UnicodeDecodeError:
        return _refused()
    zone = view.zone_for(name)
    if zone is None or qclass not in (dns.IN, dns.ANY):
        return _refused()

    domain = view.domains.get(name)
    if domain is not None and qtype in (dns.A, dns.AAAA):
        return _domain_answer(view, domain, qname, qtype, on_stale)

    if name == zone.name:
        if qtype == dns.SOA:
            return Answer(dns.OK, [soa_record(qname, zone, zone.soa_ttl)], [], [],
                          authoritative=True, domain=domain)
        if qtype == dns.NS and zone.config.nameservers:
            answers, additional = _nameserver_answer(qname, view, zone)
            return Answer(dns.OK, answers, [], additional, authoritative=True, domain=domain)

    glue = view.glue.get(name)
    if glue is not None and qtype in (dns.A, dns.AAAA):
        family = FAMILY_OF_TYPE[qtype]
        records = [address_record(qname, a, zone.soa_ttl) for a in glue
                   if (":" in a) == (family == 6)]
        if records:
            return Answer(dns.OK, records, [], [], authoritative=True)

    if (domain is not None or glue is not None or name == zone.name
            or name in view.empty_non_terminals):
        return _negative(dns.OK, zone, domain)  # NODATA
    return _negative(dns.ENAME, zone)


def _domain_answer(view: AnsweringView, domain: DomainView, qname: bytes, qtype: int,
                   on_stale: Optional[StaleHook]) -> Answer:
    family = domain.families[FAMILY_OF_TYPE[qtype]]
    if family.configured == 0:
        return _negative(dns.OK, domain.zone, domain)
    chosen = family.picker.pick()
    stale = False
    if chosen is None:
        fallback = family.last_healthy
        if fallback is None or not view.config.dns.return_last_healthy:
            return Answer(dns.ESERVER, [], [], [], authoritative=True, domain=domain)
        chosen, stale = fallback, True
        if on_stale is not None:
            on_stale(domain, chosen)
    return Answer(dns.OK, [address_record(qname, chosen.address, domain.ttl)], [], [],
                  authoritative=True, domain=domain, routed=chosen, stale=stale)


class NegativeAnswer(error.DomainError):
    """An authoritative negative answer (or refusal) carrying its sections."""

    def __init__(self, result: Answer) -> None:
        super().__init__(result.rcode)
        self.result = result


class ViewResolver(common.ResolverBase):
    """An ``IResolver`` over the current answering view.

    ``view_source`` returns the view to answer from at the time of the query.
    Positive answers fire with (answers, authority, additional); negative ones
    fail with :class:`NegativeAnswer`.
    """

    def __init__(self, view_source: Callable[[], AnsweringView]) -> None:
        common.ResolverBase.__init__(self)
        self._view_source = view_source

    def _lookup(self, name: bytes, cls: int, type: int, timeout: object
                ) -> "defer.Deferred[Tuple[List[dns.RRHeader], List[dns.RRHeader], List[dns.RRHeader]]]":
        result = answer(self._view_source(), name, type, cls)
        if result.rcode != dns.OK or not result.answers:
            return defer.fail(NegativeAnswer(result))
        return defer.succeed((result.answers, result.authority, result.additional))
