"""Routing algorithms: how one address is chosen among a domain's candidates.

Adding an algorithm means one new module with a class implementing
:class:`opengslb.routing.base.Algorithm` and one line in
:mod:`opengslb.routing.registry`.
"""

from opengslb.routing.base import Algorithm, Candidate, Picker
from opengslb.routing.registry import ALGORITHMS, algorithm_for

__all__ = ["ALGORITHMS", "Algorithm", "Candidate", "Picker", "algorithm_for"]
