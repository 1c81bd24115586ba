"""The served policy: who gets served, with what weight, and why (DESIGN.md "Data flow").

Configuration, this node's verdicts, the peers' verdicts, the runtime records
and the ramp clocks meet in one pure function, :func:`served`, which gives
each server a :class:`Served` record.  The answering view, the API and the
metrics all read those records; nothing else decides health or weight.

Modules, one job each:

* :mod:`~opengslb.served.policy` — the function and its :class:`Inputs`;
* :mod:`~opengslb.served.record` — the :class:`Served` record;
* :mod:`~opengslb.served.records` — the runtime-state snapshot and which
  registrations are candidates;
* :mod:`~opengslb.served.consensus` — combining node verdicts (SPEC §7.5);
* :mod:`~opengslb.served.bleed` — the predictive-health ramp (SPEC §7.6);
* :mod:`~opengslb.served.slow_start` — the slow-start ramp (SPEC §4.1).
"""

from opengslb.served.consensus import PeerVerdicts
from opengslb.served.policy import Inputs, served
from opengslb.served.record import Served
from opengslb.served.records import RuntimeRecords
from opengslb.served.slow_start import RampClock

__all__ = ["Inputs", "PeerVerdicts", "RampClock", "RuntimeRecords", "Served", "served"]
