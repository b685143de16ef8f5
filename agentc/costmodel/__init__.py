"""Analytic cost model: time, memory, energy and dollars of one granular op on one device.

The planner needs, for every (op, device class, tensor-parallel degree), how long the op
takes, whether it fits, and what it costs. agentc answers with the paper's roofline
(arXiv 2507.19635, section 3.1):

    t = max_r( demand_r / (peak_r * eff_r) ) + static_latency + comm + sync

with r in {compute, memory, network}. LLM forward passes (prefill, decode, their MoE
forms, embed.encode) are priced kernel by kernel instead (`layers`): each kernel of a
layer on its own smooth roofline (a p-norm of compute and memory time) plus a fixed
cost, sharded per kernel, with NCCL-style all-reduces. `op_demand` turns an op kind and its attributes
into a `Demand` (FLOPs, bytes, network bytes, fixed latency, footprint); `op_cost`
prices a demand on a `DeviceSpec`. Multi-step ops (decode) are evaluated per step and
multiplied, so the binding resource is the one of a typical step. Measured profiles in a
cluster file (`[[profile]]`) override the analytic numbers for matching op kinds.
Dollars are device time x $/hr (TCO rule, its capex part alone, or the catalog's given
$/hr, per the cluster's `pricing`); the paper's resource-priced form reduces to this
when devices are rented whole. Edge transfers between pools are `transfer_ms` over the cluster's links.

The package: `demand` (what an op asks of a device, op by op), `layers` (the kernels of
a transformer pass and their prices) and `pricing` (what that costs on a device, a
profile or a link).
"""

from .demand import KINDS, CostModelError, Demand, op_demand, supports_tp
from .pricing import (HOURS_PER_MONTH, OpCost, batch_sweep, kv_cache_bytes, op_cost, peak_egress_bw,
                      peak_ingress_bw, profiled_cost, tco_usd_per_hr, transfer_cost, transfer_ms, usd_per_hr)

__all__ = [
    "HOURS_PER_MONTH", "KINDS", "CostModelError", "Demand", "OpCost",
    "kv_cache_bytes", "peak_egress_bw", "peak_ingress_bw", "tco_usd_per_hr", "usd_per_hr",
    "op_demand", "op_cost", "batch_sweep", "profiled_cost", "transfer_ms", "transfer_cost", "supports_tp",
]
