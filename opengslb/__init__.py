"""OpenGSLB: a self-hosted global server load balancer on Twisted."""

__version__ = "0.1.0"
