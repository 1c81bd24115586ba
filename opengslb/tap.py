"""``twistd opengslb``: command-line options and service wiring.

Only wiring lives here: parse flags, load the configuration (printing every
problem and exiting non-zero on failure), and build the service tree.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

from twisted.application import service
from twisted.python import usage

import opengslb
from opengslb.config import Config, ConfigError, load_config, parse_config
from opengslb.config.load import validate_cluster_requirements
from opengslb.config.model import CLUSTER_MODES
from opengslb.exits import config_failed, fail, warn
from opengslb.logs import LogObserver, process_observer

DEFAULT_CONFIG = "/etc/opengslb/config.yaml"
PROGRAM = "opengslb"


def apply_flags(config: Config, mode: Optional[str], bootstrap: bool,
                join: Optional[str]) -> Config:
    """Flags beat the file: --mode, --bootstrap and --join override cluster.*."""
    cluster = config.cluster
    if mode is not None:
        cluster = dataclasses.replace(cluster, mode=mode)
    if bootstrap:
        cluster = dataclasses.replace(cluster, bootstrap=True)
    if join is not None:
        peers = tuple(p.strip() for p in join.split(",") if p.strip())
        cluster = dataclasses.replace(cluster, join=peers)
    return dataclasses.replace(config, cluster=cluster)


class Options(usage.Options):
    """Flags shared by ``opengslb`` and ``twistd -n opengslb`` (SPEC §1)."""

    synopsis = "[--mode standalone|cluster] [--bootstrap] [--join H:P[,H:P...]] [--config PATH] [--validate]"

    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "Configuration file."],
        ["mode", None, None, "Runtime mode: standalone or cluster (default: the file's cluster.mode)."],
        ["join", None, None, "Comma-separated cluster members to join (host:port)."],
    ]
    optFlags = [
        ["bootstrap", None, "Start a new cluster (only on an empty data directory)."],
        ["validate", None, "Validate the configuration, print OK or every error, and exit."],
        ["demo", None, "Run the built-in demo: local demo backends and a demo zone."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.config: Optional[Config] = None
        self.log_holder: Dict[str, LogObserver] = {}

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"opengslb {opengslb.__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self["mode"] is not None and self["mode"] not in CLUSTER_MODES:
            fail(PROGRAM, [f"--mode: must be standalone or cluster, not {self['mode']!r}"], 2)
        self.config = self._load()
        if self["validate"]:
            print("OK")
            raise SystemExit(0)
        parent = getattr(self, "parent", None)
        if parent is not None and not parent.get("logger"):
            # twistd resolves this dotted name after our options are parsed.
            parent["logger"] = "opengslb.logs.process_observer"
            observer = process_observer()
            observer.configure(self.config.logging.format, self.config.logging.level)
            self.log_holder["observer"] = observer

    def _load(self) -> Config:
        try:
            if self["demo"]:
                from opengslb.demo import demo_config_text
                config, warnings = parse_config(demo_config_text(), "<demo>"), list[str]()
            else:
                config, warnings = load_config(self["config"])
            config = apply_flags(config, self["mode"], self["bootstrap"], self["join"])
            problems = validate_cluster_requirements(config)
            if problems:
                raise ConfigError(problems)
        except ConfigError as error:
            config_failed(PROGRAM, error, self["validate"])
        warn(PROGRAM, warnings)
        return config


def makeService(options: Options) -> service.IService:
    """Build the service tree for validated ``options``.

    The node's own tree (:class:`opengslb.service.GslbNode`), then the
    systemd notifier and, for ``--demo``, the demo backends: children of one
    serial ``MultiService``, so they stop in the reverse order (systemd hears
    STOPPING first, the node's listeners close last).
    """
    from twisted.internet import reactor

    from opengslb.lifecycle import SerialMultiService
    from opengslb.service import GslbNode
    from opengslb.systemd import SystemdNotifier

    assert options.config is not None

    def adjust(config: Config) -> Config:
        return apply_flags(config, options["mode"], options["bootstrap"], options["join"])

    root = SerialMultiService()
    node = GslbNode(reactor, options.config, config_path=options["config"], adjust=adjust,
                    log_observer=options.log_holder)
    node.service.setServiceParent(root)
    SystemdNotifier(reactor, node.started, node.status_line).setServiceParent(root)
    if options["demo"]:
        from opengslb.demo import DemoBackends
        DemoBackends(reactor).setServiceParent(root)
    return root
