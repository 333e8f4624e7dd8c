"""A faithful imitation of the Azure APIs the poller uses (Entra ID, ARM, Azure Monitor, getBatch).

Served over HTTPS on loopback with a private CA so that the production code path runs unchanged; its
data is a pure function of the seed, so `Simulator.expected` gives any test the ground truth.
"""

from metrics_poller.simulator.server import Simulator
from metrics_poller.simulator.spec import FaultRule, SimAccount, SimDeployment, SimSpec

__all__ = ["FaultRule", "SimAccount", "SimDeployment", "SimSpec", "Simulator"]
