"""twistd plugin: ``twistd -n opengslb``.  Wiring lives in opengslb.tap."""

from twisted.application.service import ServiceMaker

opengslb = ServiceMaker(
    "OpenGSLB", "opengslb.tap", "Global server load balancer (authoritative DNS)", "opengslb"
)
