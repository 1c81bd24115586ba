"""The HTTP API (SPEC §9): :class:`GslbAPI` serves ``/api/v1``."""

from opengslb.api.app import APIError, GslbAPI, Reply, api_limits

__all__ = ["APIError", "GslbAPI", "Reply", "api_limits"]
