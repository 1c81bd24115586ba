"""How the programs stop on bad input: one line per problem, then a non-zero exit status."""

from __future__ import annotations

import sys
from typing import NoReturn, Optional, Sequence, TextIO

from opengslb.config import ConfigError


def fail(program: str, lines: Sequence[str], code: int = 1, stream: Optional[TextIO] = None) -> NoReturn:
    """Write ``program: line`` for each line to ``stream`` (stderr) and exit with ``code``."""
    out = stream if stream is not None else sys.stderr
    for line in lines:
        out.write(f"{program}: {line}\n")
    out.flush()
    raise SystemExit(code)


def config_failed(program: str, error: ConfigError, validate: bool) -> NoReturn:
    """Report every problem of an invalid configuration file and exit 1.

    With ``--validate`` the problems are the requested output and go to
    stdout as they are; otherwise to stderr, prefixed with ``program``.
    """
    lines = [str(problem) for problem in error.problems]
    if validate:
        for line in lines:
            print(line)
        raise SystemExit(1)
    fail(program, lines)


def warn(program: str, warnings: Sequence[str]) -> None:
    """Write each configuration warning to stderr."""
    for warning in warnings:
        sys.stderr.write(f"{program}: warning: {warning}\n")
