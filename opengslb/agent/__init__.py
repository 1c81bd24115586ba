"""The backend agent (SPEC §8): ``opengslb agent --config agent.yaml``.

Runs next to a backend, registers its service(s) with the cluster through
the API, renews them with heartbeats carrying a health claim from a local
check, and deregisters on SIGTERM.

- :mod:`.client`: the cluster API over treq, failing over between endpoints;
- :mod:`.service`: :class:`~.service.Agent` and one
  :class:`~.service.ServiceAgent` per configured service;
- :mod:`.predictive`: where predictive signals come from (none yet);
- :mod:`.main`: the command line (no twistd: ``task.react``).
"""

from opengslb.agent.client import APIResponse, APIUnavailable, ClusterClient
from opengslb.agent.service import Agent, ServiceAgent

__all__ = ["APIResponse", "APIUnavailable", "Agent", "ClusterClient", "ServiceAgent"]
