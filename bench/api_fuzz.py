#!/usr/bin/env python3
"""A long schemathesis run against the real API (issue 11: the document is exact).

Starts the real ``twistd -n opengslb`` process (API on loopback, an admin
token, a drain token, a region of two local TCP backends, an override and a
bleeding registration already in place: ``tests/e2e/api_fuzz.py``), waits
until it is ready, and runs the ``schemathesis`` CLI over the document it
serves, every default check on, three times:

1. with the admin token — every operation, writes included;
2. with the drain token — admin operations must answer 403;
3. without credentials — every write must answer 401.

For each run: test cases, unique failures, run errors, seconds; then the
server's log is searched for tracebacks.  Exit status 0 only when every run
found nothing and the log is clean.  The CI test
(``tests/integration/test_api_fuzz.py``) is the same with few examples and a
fixed seed.

    python bench/api_fuzz.py                          # about 6,000+ cases, several minutes
    python bench/api_fuzz.py --max-examples 100       # quicker
    python bench/api_fuzz.py --seed 1234 --json out.json
    python bench/api_fuzz.py --checks all             # also any check a newer schemathesis adds
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.api_fuzz import (  # noqa: E402
    ADMIN_TOKEN,
    DEFAULT_CHECKS,
    DRAIN_TOKEN,
    run_schemathesis,
    seed_state,
    server_problems,
    start_fuzz_server,
)

RUNS = {"admin": ADMIN_TOKEN, "drain": DRAIN_TOKEN, "none": None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=1000,
                        help="cases per operation and phase for the admin run (default 1000; the "
                             "drain and no-token runs get a fifth)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, printed)")
    parser.add_argument("--workers", type=int, default=1, help="schemathesis workers (default 1)")
    parser.add_argument("--runs", default="admin,drain,none", help="which runs, of admin, drain, none")
    parser.add_argument("--checks", default="", help="checks instead of the defaults, e.g. 'all'")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--keep", action="store_true", help="keep the server's directory (log, reports)")
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else random.randrange(2**32)
    checks = [c for c in args.checks.split(",") if c]
    directory = Path(tempfile.mkdtemp(prefix="api-fuzz-"))
    print(f"seed {seed}; checks: {', '.join(checks or DEFAULT_CHECKS)}; directory {directory}", flush=True)
    server = start_fuzz_server(directory / "server")
    results: List[Dict[str, Any]] = []
    clean = True
    try:
        seed_state(server)
        for name in args.runs.split(","):
            examples = args.max_examples if name == "admin" else max(1, args.max_examples // 5)
            started = time.monotonic()
            result = run_schemathesis(server.schema_url, directory / f"run-{name}", token=RUNS[name],
                                      max_examples=examples, seed=seed, workers=args.workers,
                                      checks=checks, timeout=6 * 3600)
            seconds = time.monotonic() - started
            row = {"run": name, "max_examples": examples, "cases": result.cases,
                   "failures": result.failures, "errors": result.errors,
                   "exit_code": result.exit_code, "complete": result.complete,
                   "seconds": round(seconds, 1),
                   "failure_kinds": [f"{f.get('code')} {f.get('title')}: {', '.join(f.get('operations', []))}"
                                     for f in result.report.get("failures", [])]}
            results.append(row)
            clean &= result.exit_code == 0 and result.failures == 0 and result.errors == 0
            print(f"{name:>6}: {result.cases:6d} cases, {result.failures} failures, {result.errors} errors, "
                  f"exit {result.exit_code}, {seconds:.0f}s", flush=True)
            if result.exit_code != 0:
                print(result.summary(), flush=True)
        problems = server_problems(server.log())
        clean &= not problems
        print(f"server log: {len(problems)} traceback/unhandled/critical lines", flush=True)
        for line in problems[:20]:
            print("   ", line[:300])
        total = sum(r["cases"] for r in results)
        failures = sum(r["failures"] for r in results)
        print(f"total: {total} cases, {failures} failures, {len(problems)} server tracebacks", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"seed": seed, "checks": checks or list(DEFAULT_CHECKS),
                                             "runs": results, "server_problems": problems}, indent=2))
    finally:
        server.stop()
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
