#!/usr/bin/env python3
"""Writes contrib/grafana/opengslb.json, the OpenGSLB dashboard (Grafana 10/11 schema).

Edit the panel list here and re-run; the JSON is committed so it can be
imported directly (Dashboards → New → Import).  A test checks that every
query names only metrics the program exposes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel(title: str, kind: str, targets: List[Dict[str, str]], x: int, y: int, w: int = 12,
          h: int = 8, unit: str = "short", description: str = "") -> Dict[str, Any]:
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        if kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [{"datasource": DATASOURCE, "refId": chr(65 + i), "expr": t["expr"],
                     "legendFormat": t.get("legend", "")} for i, t in enumerate(targets)],
    }


SEL = 'job=~"$job", instance=~"$instance"'

PANELS = [
    panel("Queries by rcode", "timeseries",
          [{"expr": f"sum by (status) (rate(opengslb_dns_queries_total{{{SEL}}}[$__rate_interval]))",
            "legend": "{{status}}"}], 0, 0, unit="reqps"),
    panel("Queries by domain", "timeseries",
          [{"expr": f"topk(10, sum by (domain) (rate(opengslb_dns_queries_total{{{SEL}}}[$__rate_interval])))",
            "legend": "{{domain}}"}], 12, 0, unit="reqps"),
    panel("Answer latency (p50 / p99)", "timeseries",
          [{"expr": f"histogram_quantile(0.5, sum by (le) (rate(opengslb_dns_query_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
            "legend": "p50"},
           {"expr": f"histogram_quantile(0.99, sum by (le) (rate(opengslb_dns_query_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
            "legend": "p99"}], 0, 8, unit="s"),
    panel("Healthy servers per region", "timeseries",
          [{"expr": f"opengslb_healthy_servers{{{SEL}}}", "legend": "{{instance}} {{region}} healthy"},
           {"expr": f"opengslb_region_servers{{{SEL}}}", "legend": "{{instance}} {{region}} total"}],
          12, 8),
    panel("Health-check failures", "timeseries",
          [{"expr": f"sum by (region, server) (rate(opengslb_health_check_results_total{{{SEL}, result=\"failure\"}}[$__rate_interval]))",
            "legend": "{{region}} {{server}}"}], 0, 16, unit="ops"),
    panel("Health-check duration (p99)", "timeseries",
          [{"expr": f"histogram_quantile(0.99, sum by (le) (rate(opengslb_health_check_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
            "legend": "p99"}], 12, 16, unit="s"),
    panel("Serving leader", "timeseries",
          [{"expr": f"opengslb_cluster_serving{{{SEL}}}", "legend": "{{node}}"}], 0, 24, w=8,
          description="1 while the node answers DNS with data (leader holding its lease); exactly one should be 1."),
    panel("Elections", "timeseries",
          [{"expr": f"increase(opengslb_cluster_elections_total{{{SEL}}}[$__rate_interval])",
            "legend": "{{instance}}"}], 8, 24, w=8),
    panel("Members connected / configured", "timeseries",
          [{"expr": f"opengslb_cluster_healthy_members{{{SEL}}}", "legend": "{{instance}} connected"},
           {"expr": f"opengslb_cluster_members_total{{{SEL}}}", "legend": "{{instance}} configured"}],
          16, 24, w=8),
    panel("Configuration hashes (drift when more than one)", "stat",
          [{"expr": f"count(count by (hash) (opengslb_config_info{{{SEL}}}))", "legend": "distinct hashes"}],
          0, 32, w=6),
    panel("Stale answers", "timeseries",
          [{"expr": f"sum by (domain) (rate(opengslb_dns_stale_answers_total{{{SEL}}}[$__rate_interval]))",
            "legend": "{{domain}}"}], 6, 32, w=6, unit="reqps"),
    panel("Overrides, vetoes, bleeding", "timeseries",
          [{"expr": f"opengslb_overrides_active{{{SEL}}}", "legend": "{{instance}} overrides"},
           {"expr": f"opengslb_vetoes_active{{{SEL}}}", "legend": "{{instance}} vetoes"},
           {"expr": f"opengslb_bleeding_servers{{{SEL}}}", "legend": "{{instance}} bleeding"}], 12, 32),
    panel("Reloads", "timeseries",
          [{"expr": f"increase(opengslb_config_reloads_total{{{SEL}}}[$__rate_interval])",
            "legend": "{{instance}} {{result}}"}], 0, 40),
    panel("Gossip drops and rejected Raft packets", "timeseries",
          [{"expr": f"sum by (instance, reason) (rate(opengslb_gossip_packets_dropped_total{{{SEL}}}[$__rate_interval]))",
            "legend": "{{instance}} gossip {{reason}}"},
           {"expr": f"rate(opengslb_cluster_rejected_packets_total{{{SEL}}}[$__rate_interval])",
            "legend": "{{instance}} raft rejected"}], 12, 40, unit="pps"),
]


def template(name: str, query: str) -> Dict[str, Any]:
    return {"name": name, "type": "query", "datasource": DATASOURCE, "query": query, "refresh": 2,
            "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}}


DASHBOARD = {
    "title": "OpenGSLB", "uid": "opengslb", "schemaVersion": 39, "version": 1, "editable": True,
    "tags": ["opengslb", "dns"], "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus",
         "current": {"text": "default", "value": "default"}},
        template("job", "label_values(opengslb_app_info, job)"),
        template("instance", 'label_values(opengslb_app_info{job=~"$job"}, instance)'),
    ]},
    "panels": PANELS,
}

if __name__ == "__main__":
    target = Path(__file__).with_name("opengslb.json")
    target.write_text(json.dumps(DASHBOARD, indent=2) + "\n")
    print(f"wrote {target}")
