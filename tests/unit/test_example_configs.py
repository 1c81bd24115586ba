"""The example configurations in etc/opengslb validate (SPEC §2, DESIGN: "etc/ ... tested to validate")."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List

import pytest
from ruamel.yaml import YAML

from opengslb.config import load_config, parse_config
from opengslb.config.load import _Checker, validate_cluster_requirements

ETC = Path(__file__).resolve().parents[2] / "etc" / "opengslb"
EXPECTED = {
    "config.yaml",
    "standalone-round-robin.yaml",
    "weighted.yaml",
    "failover.yaml",
    "dual-stack.yaml",
    "cluster.yaml",
}


def examples() -> List[Path]:
    return sorted(ETC.glob("*.yaml"))


def test_the_documented_examples_exist() -> None:
    """Every example the documentation promises is present."""
    assert EXPECTED <= {p.name for p in examples()}


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.name)
def test_example_parses(path: Path) -> None:
    """Each example is a valid configuration, cluster requirements included."""
    config = parse_config(path.read_text(), path.name)
    assert validate_cluster_requirements(config) == []


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.name)
def test_example_loads_from_a_private_copy(path: Path, tmp_path: Path) -> None:
    """load_config accepts each example once it is chmod 600 (some hold example secrets)."""
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    os.chmod(copy, 0o600)
    config, warnings = load_config(str(copy))
    assert warnings == []
    assert config.source == str(copy)


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.name)
def test_fast_and_ruamel_readers_agree(path: Path) -> None:
    """The fast reader and ruamel's safe and round-trip loaders give the same Config."""
    text = path.read_text()
    fast = parse_config(text, path.name)
    for data in (YAML(typ="safe").load(text), YAML().load(text)):
        checker = _Checker()
        assert checker.config(data, path.name) == fast
        assert checker.issues == []


def test_reference_config_is_all_defaults_but_the_examples() -> None:
    """config.yaml documents the defaults: apart from its example region and domain it changes nothing."""
    config = parse_config((ETC / "config.yaml").read_text(), "config.yaml")
    defaults = parse_config("", "config.yaml")
    assert (config.dns, config.logging, config.metrics, config.api, config.cluster) == (
        defaults.dns,
        defaults.logging,
        defaults.metrics,
        defaults.api,
        defaults.cluster,
    )


def test_cluster_example_is_cluster_mode() -> None:
    """cluster.yaml really configures cluster mode with a 3-node membership."""
    config = parse_config((ETC / "cluster.yaml").read_text(), "cluster.yaml")
    assert config.cluster.mode == "cluster"
    assert config.cluster.gossip.encryption_key
    assert len(config.cluster.join) == 3


def test_dual_stack_example_has_both_families() -> None:
    """dual-stack.yaml has IPv4 and IPv6 servers."""
    config = parse_config((ETC / "dual-stack.yaml").read_text(), "dual-stack.yaml")
    families = {s.family for r in config.regions for s in r.servers}
    assert families == {4, 6}
