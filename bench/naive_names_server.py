"""Baseline: a plain twisted.names authoritative server, as the library ships it.

This is what "just use twisted.names" gives: a BIND zone file loaded into
``twisted.names.authority.BindAuthority`` and served by
``twisted.names.server.DNSServerFactory`` over UDP and TCP.  No routing, no
health, no metrics: every name has one fixed A record.  The benchmark runs it
beside OpenGSLB to show what the prepared answering view buys.

    python bench/naive_names_server.py --zone www.bench.test.zone [--zone ...] --port 15355
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.names import authority, dns, server

reactor: Any = _reactor


def main(argv: list[str]) -> None:
    """Serve ``--zone`` on ``--address``:``--port`` until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zone", required=True, action="append",
                        help="a BIND zone file with its $ORIGIN (repeat for several zones)")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=15355)
    args = parser.parse_args(argv)

    zones = [authority.BindAuthority(path) for path in args.zone]
    factory = server.DNSServerFactory(authorities=zones)
    factory.noisy = False
    udp = dns.DNSDatagramProtocol(factory)
    udp.noisy = False
    reactor.listenUDP(args.port, udp, interface=args.address, maxPacketSize=65535)
    reactor.listenTCP(args.port, factory, interface=args.address)
    print(f"naive twisted.names serving {len(zones)} zone(s) on {args.address}:{args.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
