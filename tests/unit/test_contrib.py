"""contrib/: the Prometheus alert rules (promtool) and the Grafana dashboard name real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Set

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "contrib" / "prometheus"
DASHBOARD = REPO / "contrib" / "grafana" / "opengslb.json"
METRIC = re.compile(r"\bopengslb_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exposed_families() -> Set[str]:
    """Every metric family name the program's source declares (string literals)."""
    names: Set[str] = set()
    for path in (REPO / "opengslb").rglob("*.py"):
        names |= set(re.findall(r'"(opengslb_[a-z_]+)"', path.read_text()))
    return names


def family(sample: str, known: Set[str]) -> str:
    """The family a sample name belongs to (``x_total`` → ``x`` when only ``x`` is declared)."""
    if sample in known:
        return sample
    for suffix in SUFFIXES:
        if sample.endswith(suffix) and sample[: -len(suffix)] in known:
            return sample[: -len(suffix)]
    return sample


@pytest.mark.parametrize("path", [PROMETHEUS / "alerts.yml", DASHBOARD], ids=["alerts", "dashboard"])
def test_every_metric_named_is_one_the_program_exposes(path):
    """A typo in a rule or panel would silently never fire or draw: every name must exist."""
    known = exposed_families()
    named = set(METRIC.findall(path.read_text()))
    assert named, "no metric found: the pattern is wrong"
    unknown = sorted(name for name in named if family(name, known) not in known)
    assert unknown == []


def test_dashboard_is_importable_grafana_json():
    """The dashboard has a uid, a datasource variable, and every panel a position and queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "opengslb" and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    positions = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        positions.add((grid["x"], grid["y"]))
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
        assert panel["datasource"]["uid"] == "${datasource}"
    assert len(positions) == len(dashboard["panels"]), "two panels at the same place"


def test_committed_dashboard_is_what_the_builder_writes(tmp_path):
    """contrib/grafana/opengslb.json is regenerated from build_dashboard.py (no hand edits lost)."""
    import runpy

    module = runpy.run_path(str(REPO / "contrib" / "grafana" / "build_dashboard.py"))
    assert json.loads(DASHBOARD.read_text()) == json.loads(json.dumps(module["DASHBOARD"]))


def test_alert_rules_have_severity_and_annotations():
    """Every rule says how bad it is and what to look at."""
    rules = [rule for group in YAML(typ="safe").load((PROMETHEUS / "alerts.yml").read_text())["groups"]
             for rule in group["rules"]]
    assert len(rules) >= 10
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian package prometheus; .ci/run installs it)")
def test_promtool_checks_and_unit_tests_the_rules():
    """`promtool check rules` and `promtool test rules`: each alert fires on its fault, only then."""
    for command in (["promtool", "check", "rules", "alerts.yml"],
                    ["promtool", "test", "rules", "alerts_test.yml"]):
        result = subprocess.run(command, cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts_test.yml").read_text()))
    defined = set(re.findall(r"- alert: (\w+)", (PROMETHEUS / "alerts.yml").read_text()))
    assert defined <= tested, f"alerts without a unit test: {sorted(defined - tested)}"
