"""Health checks (SPEC §5): checkers, threshold tracking and scheduling.

- :mod:`.checks`: :class:`Checker` runs one http/https/tcp check.
- :mod:`.tracker`: :class:`ServerKey`, :class:`ServerHealth` (thresholds).
- :mod:`.manager`: :class:`HealthManager` schedules checks per server.
"""

from .checks import Checker, CheckFailed
from .manager import HealthChecker, HealthManager
from .tracker import ServerHealth, ServerKey

__all__ = [
    "CheckFailed",
    "Checker",
    "HealthChecker",
    "HealthManager",
    "ServerHealth",
    "ServerKey",
]
