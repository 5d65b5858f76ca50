"""The piece-strategy lab: a discrete-event swarm simulator on the client's own picker and choker.

``python -m benchmarks.strategies --list``; see ``benchmarks/README.md``, section "Strategy lab".
"""

from benchmarks.strategies.sim import PeerSpec, SimConfig, SimResult, Simulator, fluid_bound, simulate

__all__ = ["PeerSpec", "SimConfig", "SimResult", "Simulator", "fluid_bound", "simulate"]
