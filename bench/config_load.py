"""Time ``parse_config`` on a large generated configuration.

Generates about 2 MB of YAML (10,000 domains over 1,000 regions of 20
servers each: 20,000 servers), parses it once, and prints the size, the
seconds taken and the peak resident memory.  The target (SPEC issue on
large files) is well under 3 s.

    python bench/config_load.py [--domains N] [--regions N] [--servers-per-region N] [--keep FILE]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opengslb.config.load import parse_config  # noqa: E402
from opengslb.config.yamlread import CParser  # noqa: E402


def generate(domains: int, regions: int, servers_per_region: int) -> str:
    """A valid configuration with the given numbers of domains, regions and servers."""
    lines: List[str] = [
        "dns:",
        '  listen_address: ":53"',
        "  default_ttl: 60",
        "regions:",
    ]
    for r in range(regions):
        lines.append(f"  - name: region-{r:04d}")
        lines.append("    servers:")
        for s in range(servers_per_region):
            n = r * servers_per_region + s
            address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            lines.append(f"      - {{address: {address}, port: 8080, weight: {100 + s}}}")
        lines.append("    health_check:")
        lines.append("      type: http")
        lines.append("      interval: 30s")
        lines.append("      timeout: 5s")
        lines.append("      path: /health")
    lines.append("domains:")
    algorithms = ("round-robin", "weighted", "failover")
    for d in range(domains):
        lines.append(f"  - name: app-{d:05d}.gslb.example.com")
        lines.append(f"    routing_algorithm: {algorithms[d % 3]}")
        lines.append(f"    regions: [region-{d % regions:04d}, region-{(d + 1) % regions:04d}]")
        lines.append("    ttl: 30")
    return "\n".join(lines) + "\n"


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--regions", type=int, default=1_000)
    parser.add_argument("--servers-per-region", type=int, default=20)
    parser.add_argument("--keep", help="also write the generated file here")
    args = parser.parse_args()

    text = generate(args.domains, args.regions, args.servers_per_region)
    if args.keep:
        Path(args.keep).write_text(text)
    before = peak_rss_mb()
    start = time.perf_counter()
    config = parse_config(text, "bench.yaml")
    seconds = time.perf_counter() - start
    servers = sum(len(r.servers) for r in config.regions)
    print(
        f"libyaml parser:  {'yes' if CParser is not None else 'NO (pure Python; install ruamel.yaml.clib)'}"
    )
    print(f"size:            {len(text.encode()) / 1e6:.2f} MB")
    print(f"domains/servers: {len(config.domains)} / {servers}")
    print(f"parse_config:    {seconds:.2f} s")
    print(f"peak RSS:        {peak_rss_mb():.0f} MiB (before parsing: {before:.0f} MiB)")


if __name__ == "__main__":
    main()
