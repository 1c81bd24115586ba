"""Read and validate the configuration file (SPEC §2) into a frozen :class:`Config`.

Public API::

    parse_config(text, filename="<string>") -> Config
    load_config(path) -> (Config, warnings)
    validate_cluster_requirements(config) -> [Problem]
    parse_listen_address(text) -> ListenAddress
    parse_host_port(text) -> (host, port)
    Problem, ConfigError

The jobs live in their own modules (a 2 MB, 10,000-domain file must load in
well under 3 s, and a reload must not hold memory it does not need):
:mod:`~opengslb.config.yamlread` reads the text fast into plain data and
finds line numbers only when there are problems;
:mod:`~opengslb.config.schema` checks the plain data in one pass, building
the model as it goes; :mod:`~opengslb.config.values` parses single values;
:mod:`~opengslb.config.problems` words what is wrong.  This module reads the
file (encoding, permissions, secrets) and puts those together.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple, Union

from opengslb.config.model import Config
from opengslb.config.problems import ConfigError, Problem, format_path
from opengslb.config.schema import Checker, cluster_issues
from opengslb.config.values import parse_host_port, parse_listen_address
from opengslb.config.yamlread import SyntaxProblem, load_plain, locate
from opengslb.routing.base import CLIENT_PREFIX_CAP

__all__ = [
    "ConfigError",
    "Problem",
    "load_config",
    "parse_config",
    "parse_host_port",
    "parse_listen_address",
    "read_config_file",
    "validate_cluster_requirements",
]

# The checker and the fast reader under the names the configuration tests use.
_Checker = Checker
_load_plain = load_plain

def _parse(text: str, filename: str) -> Tuple[Optional[Config], List[Problem], Any]:
    """``(config or None, problems, plain data)``: everything :func:`parse_config` learns."""
    try:
        data = load_plain(text)
    except SyntaxProblem as problem:
        return None, [Problem(filename, problem.line, "", problem.message)], None
    checker = Checker()
    config = checker.config(data, filename)
    if not checker.issues:
        return config, [], data
    return None, locate(text, filename, checker.issues), data



def parse_config(text: str, filename: str = "<string>") -> Config:
    """Parse and validate configuration text.

    :param text: the YAML document; empty (or comments only) gives the defaults.
    :param filename: how problems name the file; also stored as ``Config.source``.
    :returns: the validated :class:`Config`.
    :raises ConfigError: listing every problem found (a YAML syntax error
        stops at that error, since nothing after it can be read).

    When the file itself says ``cluster.mode: cluster``, the cluster-mode
    requirements (:func:`validate_cluster_requirements`) are checked too.
    CPU-bound (about a second for a 2 MB file): call it off the reactor thread.
    """
    config, problems, _ = _parse(text, filename)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def validate_cluster_requirements(config: Config) -> List[Problem]:
    """What cluster mode needs, checked after command-line flags are applied.

    Empty unless ``config.cluster.mode == "cluster"``.  Checks that
    ``cluster.gossip.encryption_key`` is set, that ``advertise_address`` is
    set when ``bind_address`` is a wildcard, that every ``join`` entry is
    ``host:port``, and that no more than 7 members are named.  Problems name
    ``config.source`` without a line (a flag may be the cause).
    """
    return [
        Problem(config.source, None, format_path(path), message)
        for path, message in cluster_issues(config.cluster)
    ]


def _secrets_in(data: Any) -> List[str]:
    """The secret-holding keys that are set in plain data (SPEC §2)."""
    found: List[str] = []
    if not isinstance(data, dict):
        return found
    api = data.get("api")
    if isinstance(api, dict) and api.get("tokens"):
        found.append("api.tokens")
    cluster = data.get("cluster")
    gossip = cluster.get("gossip") if isinstance(cluster, dict) else None
    if isinstance(gossip, dict) and gossip.get("encryption_key"):
        found.append("cluster.gossip.encryption_key")
    return found


def read_config_file(name: str, what: str) -> Tuple[str, int]:
    """The text of the file ``name`` (UTF-8, BOM allowed) and its ``st_mode``.

    :raises ConfigError: it cannot be read (``cannot read the {what}: ...``)
        or is not UTF-8 (the problem names the line).
    """
    try:
        with open(name, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            raw = handle.read()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError([Problem(name, None, "", f"cannot read the {what}: {reason}")]) from None
    try:
        return raw.decode("utf-8-sig"), mode
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError([Problem(name, line, "", "the file is not UTF-8 text")]) from None


def load_config(path: Union[str, "os.PathLike[str]"]) -> Tuple[Config, List[str]]:
    """Read, check the permissions of, parse and validate a configuration file.

    :returns: ``(config, warnings)``; ``config.source`` is ``path``.  Warnings
        are one-line strings for the operator: the file is writable by every
        user, or (holding no secrets) readable by every user.
    :raises ConfigError: listing every problem: the file cannot be read or is
        not UTF-8; it holds secrets (``api.tokens``,
        ``cluster.gossip.encryption_key``) and is readable by every user (the
        problem says ``chmod 600 FILE``); and every validation problem.
    """
    name = os.fspath(path)
    text, mode = read_config_file(name, "configuration file")
    config, problems, data = _parse(text, name)
    secrets = _secrets_in(data)
    if secrets and mode & 0o004:
        problems.insert(
            0,
            Problem(
                name,
                None,
                "",
                f"holds secrets ({', '.join(secrets)}) but is readable by every user"
                f" (mode {mode & 0o777:04o}); run: chmod 600 {name}",
            ),
        )
    if problems or config is None:
        raise ConfigError(problems)
    warnings: List[str] = []
    if mode & 0o002:
        warnings.append(
            f"{name}: writable by every user (mode {mode & 0o777:04o}), so anyone on this host"
            f" can change what this server answers; run: chmod 600 {name}"
        )
    elif mode & 0o004:
        warnings.append(
            f"{name}: readable by every user (mode {mode & 0o777:04o}); it holds no secrets now,"
            f" but run chmod 600 {name} before adding api.tokens or cluster.gossip.encryption_key"
        )
    warnings.extend(f"{name}: {text}" for text in topology_warnings(config))
    return config, warnings


def topology_warnings(config: Config) -> List[str]:
    """Topology networks longer than the ECS cap (/24 IPv4, /56 IPv6, SPEC §4.1).

    An ECS client is its network capped at that length, so such a network
    matches only queries sent from inside it without ECS (by source address);
    every resolver sending ECS gets the answer of the network around it.
    """
    found: List[str] = []
    for domain in config.domains:
        for number, rule in enumerate(domain.topology, 1):
            for network in rule.networks:
                cap = CLIENT_PREFIX_CAP[network.version]
                if network.prefixlen > cap:
                    found.append(
                        f"domains[{domain.name}].topology rule {number}: network {network} is longer than "
                        f"/{cap}; ECS client networks are capped at /{cap}, so it matches only queries "
                        f"sent from inside it without ECS")
    return found
