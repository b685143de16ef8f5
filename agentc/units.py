"""Units and the one formula between them that several layers share.

Imports nothing of agentc, so the catalog, the cost model and the planner (which must
not depend on the catalog) all take the transfer time from here.
"""

from __future__ import annotations


def transfer_ms(nbytes: float, gbps: float, latency_ms: float) -> float:
    """Time to move `nbytes` over a link of `gbps` gigabits per second with a fixed
    `latency_ms`: latency plus serialisation (8 bits a byte, 1e6 bits per Gb-ms)."""
    return latency_ms + (nbytes * 8.0 / (gbps * 1e6) if nbytes else 0.0)
