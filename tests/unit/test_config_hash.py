"""The published configuration hash (opengslb.cluster.facade.config_hash, issue 11 item 4).

It is shown to anyone who can read the metrics or the cluster status, so it
must cover what members have to agree on and nothing secret.
"""

from __future__ import annotations

import base64
import textwrap

from opengslb.cluster.facade import config_hash, hashed_text
from opengslb.config import Config, parse_config

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()


def config(token: str = "token-one-1234", key: str = KEY_A, domain: str = "app.example.test",
           node: str = "192.0.2.11", drain: str = "drain-token-5678") -> Config:
    return parse_config(textwrap.dedent(f"""\
        api:
          enabled: true
          tokens: [{token}, {{token: {drain}, scope: drain}}]
        regions:
          - name: r1
            servers: [{{address: 192.0.2.1}}]
        domains:
          - {{name: {domain}, regions: [r1]}}
        cluster:
          mode: cluster
          node_name: {node}
          bind_address: "{node}:7946"
          gossip: {{encryption_key: "{key}"}}
        """), "config.yaml")


def test_changing_only_a_token_keeps_the_hash() -> None:
    """An admin or a drain token is not part of the hash: it cannot be tested against it."""
    assert config_hash(config(token="another-token-9")) == config_hash(config())
    assert config_hash(config(drain="another-drain-9")) == config_hash(config())


def test_changing_only_the_cluster_key_keeps_the_hash() -> None:
    """The cluster key is not part of the hash."""
    assert config_hash(config(key=KEY_B)) == config_hash(config())


def test_changing_a_domain_changes_the_hash() -> None:
    """What members must agree on (here a domain name) is covered: a drift shows."""
    assert config_hash(config(domain="other.example.test")) != config_hash(config())


def test_node_specific_settings_are_left_out() -> None:
    """Each member's own name and addresses do not count as drift."""
    assert config_hash(config(node="192.0.2.12")) == config_hash(config())


def test_no_secret_reaches_the_hashed_text() -> None:
    """Neither token nor the key (nor its base64 text) appears in what is hashed, whatever field
    holds it."""
    text = hashed_text(config())
    for secret in ("token-one-1234", "drain-token-5678", KEY_A):
        assert secret not in text
    assert "app.example.test" in text
    assert len(config_hash(config())) == 64
