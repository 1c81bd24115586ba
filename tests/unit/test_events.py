"""The ring of recent notable events fed by the Twisted logger."""

from __future__ import annotations

from twisted.logger import Logger, LogPublisher

from opengslb.events import RecentEvents


def test_only_notable_events_are_kept_newest_first():
    """Events with a notable `event` field are kept with their formatted message; others are not."""
    publisher = LogPublisher()
    recent = RecentEvents()
    publisher.addObserver(recent)
    log = Logger(observer=publisher, namespace="t")
    log.warn("server {server} in {region} is down: {reason}", server="192.0.2.1:80", region="east",
             reason="timeout", event="server_down")
    log.info("noise {n}", n=1, event="fd_limit")
    log.info("no event field at all")
    log.info("failover for {domain}: {old} → {new}", domain="a.test", old="x", new="y", event="failover")
    events = recent.snapshot()
    assert [e["kind"] for e in events] == ["failover", "server_down"]
    assert events[1]["message"] == "server 192.0.2.1:80 in east is down: timeout"
    assert events[1]["level"] == "warn" and events[0]["level"] == "info"
    assert events[0]["time"] >= events[1]["time"] > 0


def test_the_ring_keeps_the_last_n():
    """Past the bound the oldest events fall out."""
    recent = RecentEvents(keep=3)
    for i in range(5):
        recent({"event": "server_up", "log_format": "up {i}", "i": i, "log_time": float(i)})
    assert [e["message"] for e in recent.snapshot()] == ["up 4", "up 3", "up 2"]
