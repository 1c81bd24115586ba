"""``opengslb agent [--config PATH] [--validate]``: the agent's command line.

Runs without twistd (the ``opengslb`` twistd plugin is the server): the
reactor is driven by :func:`twisted.internet.task.react`.  SIGTERM and
SIGINT stop the reactor; a before-shutdown trigger deregisters every service
first, so the process exits only after the deregistrations were answered (or
every endpoint failed).  Configuration problems print one line each to
stderr and exit 1.
"""

from __future__ import annotations

import sys
from typing import Any, List, Optional

from twisted.internet import defer, task
from twisted.logger import globalLogBeginner
from twisted.python import usage

from opengslb.config import ConfigError
from opengslb.config.agent import DEFAULT_AGENT_CONFIG, AgentConfig, load_agent_config
from opengslb.exits import config_failed, fail, warn
from opengslb.logs import LogObserver

__all__ = ["AgentOptions", "run"]

PROGRAM = "opengslb agent"


class AgentOptions(usage.Options):
    """Flags of ``opengslb agent``."""

    synopsis = "opengslb agent [--config PATH] [--validate]"
    longdesc = ("Registers this host's services with an OpenGSLB cluster, renews them with "
                "heartbeats carrying the health claim of a local check, and deregisters them "
                "on SIGTERM.")
    optParameters = [["config", "c", DEFAULT_AGENT_CONFIG, "Agent configuration file."]]
    optFlags = [["validate", None, "Validate the file, print OK or every error, and exit."]]

    def opt_version(self) -> None:
        """Print the version and exit."""
        import opengslb

        print(f"opengslb {opengslb.__version__}")
        raise SystemExit(0)


def _load(path: str, validate: bool) -> AgentConfig:
    try:
        config, warnings = load_agent_config(path)
    except ConfigError as error:
        config_failed(PROGRAM, error, validate)
    warn(PROGRAM, warnings)
    return config


def _main(reactor: Any, config: AgentConfig) -> "defer.Deferred[None]":
    """Start the agent; the Deferred fires once it has stopped (after SIGTERM/SIGINT)."""
    from opengslb.agent.predictive import PredictiveSampler
    from opengslb.agent.service import Agent

    # Predictive signals (SPEC §7.6): CPU and memory by psutil, the local checks' error rate.
    agent = Agent(reactor, config, signals=PredictiveSampler(config.predictive_health))
    finished: "defer.Deferred[None]" = defer.Deferred()

    def shutdown() -> "defer.Deferred[None]":
        d = agent.stop()
        d.addBoth(lambda _: None if finished.called else finished.callback(None))
        return d

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    agent.start()
    return finished


def run(argv: Optional[List[str]] = None) -> None:
    """Entry point of ``opengslb agent``; exits the process."""
    options = AgentOptions()
    try:
        options.parseOptions(list(sys.argv[2:] if argv is None else argv))
    except usage.UsageError as error:
        fail(PROGRAM, [str(error), f"usage: {AgentOptions.synopsis}"], 2)
    config = _load(options["config"], options["validate"])
    if options["validate"]:
        print("OK")
        raise SystemExit(0)
    observer = LogObserver(sys.stdout, config.logging.format, config.logging.level)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)  # type: ignore[list-item]
    task.react(_main, (config,))
