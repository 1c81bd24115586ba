"""Authoritative answers: the zone semantics, in one place.

:func:`answer` turns one question into an :class:`Answer` — rcode, the three
record sections and what was routed — from an :class:`AnsweringView`.  It
knows NXDOMAIN from NODATA from REFUSED (SPEC §3, RFC 2308, RFC 8020); the
server module only deals with wire format and transports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from twisted.logger import Logger
from twisted.names import dns

from opengslb.dns.reply import WireName, record
from opengslb.dns.view import FAMILY_OF_TYPE, AnsweringView, DomainView, FamilyAnswer, ZoneView
from opengslb.dns.wire import Question
from opengslb.routing import Candidate
from opengslb.routing.base import NO_CLIENT, Client
from opengslb.stats import QueryStats

log = Logger(namespace="opengslb.dns")

OTHER_DOMAIN = "_other"  # metrics label for names that are not configured domains


@dataclass
class Answer:
    """One authoritative (or refused) answer.

    ``domain`` is the configured domain the question hit (or ``None``);
    ``routed`` the candidate chosen by the routing algorithm (the first of
    ``chosen``, every routed address of a multi-value answer); ``stale`` is
    true when the last healthy address was supplied.  ``scope`` is the ECS
    scope prefix length the answer depends on (0: on nothing about the
    client); ``policy`` the ``when_all_down`` policy that made the answer, or
    ``None``.
    """

    rcode: int
    answers: List[dns.RRHeader]
    authority: List[dns.RRHeader]
    additional: List[dns.RRHeader]
    authoritative: bool
    domain: Optional[DomainView] = None
    routed: Optional[Candidate] = None
    stale: bool = False
    scope: int = 0
    policy: Optional[str] = None
    chosen: Tuple[Candidate, ...] = ()


def _refused() -> Answer:
    return Answer(dns.EREFUSED, [], [], [], authoritative=False)


def soa_record(owner: dns.Name, zone: ZoneView, ttl: int) -> dns.RRHeader:
    soa = zone.config.soa
    return record(owner, dns.SOA, ttl, dns.Record_SOA(
        mname=soa.mname, rname=soa.rname, serial=serial_of(zone), refresh=soa.refresh,
        retry=soa.retry, expire=soa.expire, minimum=soa.minimum, ttl=ttl))


def serial_of(zone: ZoneView) -> int:
    """SOA serial: fixed at 1.

    The zone is synthesised from live state and never transferred, so
    secondaries never compare serials (gdnsd does the same for its dynamic
    records).
    """
    return 1


def address_record(owner: dns.Name, address: str, ttl: int) -> dns.RRHeader:
    if ":" in address:
        return record(owner, dns.AAAA, ttl, dns.Record_AAAA(address, ttl=ttl))
    return record(owner, dns.A, ttl, dns.Record_A(address, ttl=ttl))


def _negative(rcode: int, zone: ZoneView, domain: Optional[DomainView] = None) -> Answer:
    return Answer(rcode, [], [soa_record(dns.Name(zone.name), zone, zone.negative_ttl)], [],
                  authoritative=True, domain=domain)


def _nameserver_answer(owner: dns.Name, view: AnsweringView, zone: ZoneView
                       ) -> Tuple[List[dns.RRHeader], List[dns.RRHeader]]:
    ttl = zone.soa_ttl
    answers = [record(owner, dns.NS, ttl, dns.Record_NS(ns.name, ttl=ttl))
               for ns in zone.config.nameservers]
    additional = [address_record(dns.Name(ns.name), address, ttl)
                  for ns in zone.config.nameservers for address in view.glue.get(ns.name, ())]
    return answers, additional


StaleHook = Callable[[DomainView, Candidate], None]
AllDownHook = Callable[[DomainView, FamilyAnswer, str], None]
"""(domain, its family, the when_all_down policy used) — called for every all-down answer."""


class AllDownReport:
    """Counts every all-down answer per (domain, policy) and logs it once per outage.

    An outage of a (domain, family) lasts as long as its :class:`FamilyAnswer`:
    the view makes a new one whenever the domain's servers change, so the next
    outage is logged again.  ``last-healthy`` answers are logged by the stale
    hook (the core's ``on_stale``), as they always were, and only counted here.
    """

    def __init__(self, stats: QueryStats) -> None:
        self._stats = stats

    def __call__(self, domain: DomainView, family: FamilyAnswer, policy: str) -> None:
        self._stats.count_all_down(domain.name, policy)
        if family.outage_logged:
            return
        family.outage_logged = True
        if policy != "last-healthy":
            log.warn("every server of {domain} is unhealthy; answering with when_all_down: {policy}",
                     domain=domain.name, policy=policy, event="all_down_answer")

ANY = 255  # QTYPE * (RFC 1035 §3.2.3); answered per RFC 8482
RFC8482_HINFO = dns.Record_HINFO(cpu=b"RFC8482", os=b"")


def answer(view: AnsweringView, question: Question, on_stale: Optional[StaleHook] = None,
           client: Client = NO_CLIENT, on_all_down: Optional[AllDownHook] = None,
           advance: bool = True) -> Answer:
    """Answer one question from ``view``.

    The name is compared label by label with the configured names (letter
    case folded): a name holding a ``.`` octet or any non-ASCII octet inside
    a label can only be an unknown name in its zone (NXDOMAIN, RFC 2181 §11)
    or outside every zone (REFUSED).  Answers are owned by the question name
    exactly as the client spelled it.  QTYPE ANY (RFC 8482 §4) at a name with
    data answers one RRset: the routed A (else AAAA) answer of a domain, the
    SOA at an apex, the addresses of a name server, or a synthesised HINFO
    when none of those is available.  ``on_stale`` is called when a
    last-healthy address is served because every candidate is down, and
    ``on_all_down`` for every answer a ``when_all_down`` policy made.
    ``client`` is the client's network (ECS or source address) for
    client-aware routing.  With ``advance=False`` no rotation moves and no
    hook is called: the answer the next query would get (for explaining).
    """
    qname, qtype, qclass = question.name, question.qtype, question.qclass
    if qclass not in (dns.IN, dns.ANY):
        return _refused()
    zone = view.zone_for_name(qname)
    if zone is None:
        return _refused()
    owner = WireName(qname)
    name = qname.lookup_text()  # None: no configured name can be this one

    domain = view.domains.get(name) if name is not None else None
    routing = _Routing(client, on_stale, on_all_down, advance)
    if domain is not None and qtype in (dns.A, dns.AAAA):
        return _domain_answer(view, domain, owner, qtype, routing)
    if qtype == ANY and (domain is not None or name == zone.name or name in view.glue):
        return _any_answer(view, zone, domain, owner, name, routing)

    if name == zone.name:
        if qtype == dns.SOA:
            return Answer(dns.OK, [soa_record(owner, zone, zone.soa_ttl)], [], [],
                          authoritative=True, domain=domain)
        if qtype == dns.NS and zone.config.nameservers:
            answers, additional = _nameserver_answer(owner, view, zone)
            return Answer(dns.OK, answers, [], additional, authoritative=True, domain=domain)

    glue = view.glue.get(name) if name is not None else None
    if glue is not None and qtype in (dns.A, dns.AAAA):
        records = _glue_records(owner, glue, FAMILY_OF_TYPE[qtype], zone.soa_ttl)
        if records:
            return Answer(dns.OK, records, [], [], authoritative=True)

    if name is not None and (domain is not None or glue is not None or name == zone.name
                             or name in view.empty_non_terminals):
        return _negative(dns.OK, zone, domain)  # NODATA
    return _negative(dns.ENAME, zone)


def _glue_records(owner: dns.Name, addresses: Sequence[str], family: int, ttl: int) -> List[dns.RRHeader]:
    return [address_record(owner, a, ttl) for a in addresses if (":" in a) == (family == 6)]


@dataclass(frozen=True)
class _Routing:
    """Who asks and who hears about all-down answers (the arguments of :func:`answer`)."""

    client: Client
    on_stale: Optional[StaleHook]
    on_all_down: Optional[AllDownHook]
    advance: bool


def _any_answer(view: AnsweringView, zone: ZoneView, domain: Optional[DomainView], owner: dns.Name,
                name: Optional[str], routing: _Routing) -> Answer:
    """QTYPE ANY at a name with data: one RRset (RFC 8482 §4.1), else a synthesised HINFO (§4.2)."""
    if domain is not None:
        for qtype in (dns.A, dns.AAAA):
            if domain.families[FAMILY_OF_TYPE[qtype]].configured:
                result = _domain_answer(view, domain, owner, qtype, routing)
                if result.rcode == dns.OK and result.answers:
                    return result
        ttl = domain.ttl
    elif name == zone.name:
        return Answer(dns.OK, [soa_record(owner, zone, zone.soa_ttl)], [], [], authoritative=True)
    else:
        addresses = view.glue.get(name or "", ())
        for family in (4, 6):
            records = _glue_records(owner, addresses, family, zone.soa_ttl)
            if records:
                return Answer(dns.OK, records, [], [], authoritative=True)
        ttl = zone.soa_ttl
    return Answer(dns.OK, [record(owner, dns.HINFO, ttl, RFC8482_HINFO)], [], [],
                  authoritative=True, domain=domain)


def _domain_answer(view: AnsweringView, domain: DomainView, owner: dns.Name, qtype: int,
                   routing: _Routing) -> Answer:
    family = domain.families[FAMILY_OF_TYPE[qtype]]
    if family.configured == 0:
        return _negative(dns.OK, domain.zone, domain)
    steering = family.steering
    assert steering is not None
    chosen, scope = steering.select(routing.client, routing.advance)
    if chosen:
        return Answer(dns.OK, [address_record(owner, c.address, domain.ttl) for c in chosen], [], [],
                      authoritative=True, domain=domain, routed=chosen[0], scope=scope, chosen=chosen)
    return _all_down(view, domain, family, owner, routing)


def _all_down(view: AnsweringView, domain: DomainView, family: FamilyAnswer, owner: dns.Name,
              routing: _Routing) -> Answer:
    """The domain's ``when_all_down`` answer (SPEC §4.1); client-independent, so scope 0."""
    policy = view.config.all_down_policy(domain.config)
    if routing.advance and routing.on_all_down is not None:
        routing.on_all_down(domain, family, policy)
    ttl = domain.ttl
    if policy == "last-healthy" and family.last_healthy is not None:
        chosen = family.last_healthy
        if routing.advance and routing.on_stale is not None:
            routing.on_stale(domain, chosen)
        return Answer(dns.OK, [address_record(owner, chosen.address, ttl)], [], [], authoritative=True,
                      domain=domain, routed=chosen, stale=True, policy=policy, chosen=(chosen,))
    if policy == "all" and family.everyone:
        return Answer(dns.OK, [address_record(owner, c.address, ttl) for c in family.everyone], [], [],
                      authoritative=True, domain=domain, policy=policy, chosen=family.everyone)
    if policy == "fallback" and family.fallback:
        return Answer(dns.OK, [address_record(owner, a, ttl) for a in family.fallback], [], [],
                      authoritative=True, domain=domain, policy=policy)
    if policy in ("nodata", "fallback"):
        result = _negative(dns.OK, domain.zone, domain)
        result.policy = policy
        return result
    return Answer(dns.ESERVER, [], [], [], authoritative=True, domain=domain, policy=policy)
