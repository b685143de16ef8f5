"""Pricing a demand on a device: the paper's roofline time (arXiv 2507.19635, section
3.1), memory fit, energy and dollars (TCO rule, its capex part alone, or the catalog's
given $/hr), measured `[[profile]]` overrides, and transfers over the cluster's links.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from agentc.catalog import Cluster, DeviceSpec, Link, ModelSpec, Pool, Profile
from agentc.diagnostics import SourceLoc
from agentc.dialects.ops import kv_cache_bytes

from .demand import (_DECODE_KINDS, _PREFILL_KINDS, _WAITING_KINDS, CostModelError, Demand, _attr, op_demand,
                     supports_tp)
from .layers import allreduce_ms, price_kernels, smooth_roof

HOURS_PER_MONTH = 8760 / 12  # 730: financing is monthly, prices are hourly


@dataclass(frozen=True)
class OpCost:
    """The price of one op on one device class at tensor-parallel degree tp.

    Times are milliseconds for the whole op (all steps); `tbt_ms` is the slowest decode
    step (the last one), `ttft_ms` the time to the first token for prefill kinds.
    `usd_per_call` pays for all tp devices for `busy_ms` (time_ms less the wait on
    external parties); `energy_j` assumes TDP over the same time.
    """

    kind: str
    device: str
    tp: int
    time_ms: float
    binding: str
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    network_ms: float = 0.0
    static_ms: float = 0.0
    sync_ms: float = 0.0
    wait_ms: float = 0.0
    memory_bytes: float = 0.0
    fits: bool = True
    energy_j: float = 0.0
    usd_per_call: float = 0.0
    tbt_ms: float | None = None
    ttft_ms: float | None = None
    profiled: bool = False
    host_side: bool = False
    fee_usd: float = 0.0  # of usd_per_call, what is paid per call besides device time

    @property
    def busy_ms(self) -> float:
        """How long the op occupies its devices: what is paid for and sizes replicas."""
        return self.time_ms - self.wait_ms


# --------------------------------------------------------------------------- formulas

def peak_egress_bw(model: ModelSpec, isl: float, batch: float, ttft_ms: float, n_prefill_devices: int = 1) -> float:
    """Bytes/s each prefill device must send to ship the KV cache within TTFT."""
    return kv_cache_bytes(model, isl, batch) / (ttft_ms / 1e3 * n_prefill_devices)


def peak_ingress_bw(model: ModelSpec, isl: float, batch: float, tbt_ms: float, n_decode_devices: int = 1) -> float:
    """Bytes/s each decode device must receive so the KV transfer fits in one TBT."""
    return kv_cache_bytes(model, isl, batch) / (tbt_ms / 1e3 * n_decode_devices)


def tco_usd_per_hr(device: DeviceSpec, years: float = 4, rate: float = 0.08, usd_per_kwh: float = 0.40) -> float:
    """The paper's TCO rule: capex financed as a monthly annuity over `years` at annual
    `rate`, spread over 730 hours a month (8760/12), plus power at TDP."""
    if device.capex_usd is None:
        raise CostModelError(f"device '{device.name}' has no capex_usd, so no TCO price")
    n = 12 * years
    r = rate / 12
    monthly = device.capex_usd / n if r == 0 else device.capex_usd * r / (1 - (1 + r) ** -n)
    return monthly / HOURS_PER_MONTH + device.tdp_w / 1000 * usd_per_kwh


def usd_per_hr(device: DeviceSpec, cluster: Cluster | None = None) -> float:
    """$/hr of one device under the cluster's pricing: "tco" (the paper's rule), "capex"
    (the same financing without the power term: hardware cost alone, for owners whose
    power is a flat fee) or "given" (the catalog's $/hr). Without a cluster: TCO with the paper's defaults. An
    abstract device with no capex falls back to its given price."""
    pricing = cluster.pricing if cluster is not None else "tco"
    if pricing in ("tco", "capex") and device.capex_usd is not None:
        if cluster is None:
            return tco_usd_per_hr(device)
        energy = cluster.energy_usd_per_kwh if pricing == "tco" else 0.0
        return tco_usd_per_hr(device, cluster.financing_years, cluster.interest_rate, energy)
    if device.given_usd_per_hr is None:
        raise CostModelError(f"device '{device.name}' has no price: set given_usd_per_hr"
                             + ("" if pricing == "given" else " or capex_usd"))
    return device.given_usd_per_hr


def transfer_ms(nbytes: float, link: Link | None) -> float:
    """Latency plus serialisation time of `nbytes` over a link (gbps in Gb/s); no link
    (same pool) costs nothing."""
    if link is None:
        return 0.0
    return link.transfer_ms(nbytes)


# --------------------------------------------------------------------------- pricing a demand

def _price(kind: str, demand: Demand, device: DeviceSpec, tp: int, cluster: Cluster | None,
           comm_tp: int | None = None) -> OpCost:
    """Roofline time of `demand` on `tp` devices of class `device`."""
    steps = max(1, demand.steps)
    network_ms = demand.net_bytes * 8 / (device.nic_gbits_s * 1e9) * 1e3 if demand.net_bytes else 0.0
    # What stays resident between calls (weights, KV, an index, the op's own data) picks
    # the level on a measured bandwidth curve: a CPU op whose data fits the cache streams
    # it from there on every call after the first.
    working_set = max(demand.footprint_at(tp), demand.traffic_at(tp) / steps)
    if demand.kernels:
        # The per-kernel layer model (costmodel.layers): each kernel on its own smooth
        # roof plus its fixed cost; the binding resource is the one that bound the
        # kernels holding most of the time.
        kt = price_kernels(demand.kernels, device, tp, demand.dtype, working_set)
        compute_ms, memory_ms = steps * kt.compute_ms, steps * kt.memory_ms
        roof = {"compute": steps * kt.compute_bound_ms, "memory": steps * kt.memory_bound_ms, "network": network_ms}
        static_ms = demand.static_ms + steps * kt.fixed_ms
        roof_ms = roof["compute"] + roof["memory"] + network_ms
    else:
        peak_flops = device.flops_per_s(demand.dtype, demand.flops / steps / tp if demand.flops else None)
        compute_ms = demand.flops / tp / peak_flops * 1e3 if demand.flops else 0.0
        memory_ms = _stream_ms(demand, device, tp, working_set)
        roof = {"compute": compute_ms, "memory": memory_ms, "network": network_ms}
        static_ms = demand.static_ms + demand.launches * device.launch_us / 1e3
        # Totals are sums of identical mean steps, so the roof of totals = steps x roof per step.
        roof_ms = smooth_roof(roof.values(), device.roofline_p)
    group = comm_tp if comm_tp is not None else tp
    sync_ms = 0.0
    if group > 1 and demand.allreduces_per_step:
        if device.fabric_gbytes_s <= 0:
            raise CostModelError(f"device '{device.name}' has no scale-up fabric for tp={group}")
        sync_ms = steps * demand.allreduces_per_step * allreduce_ms(demand.allreduce_bytes, group, device)
    busy_ms = roof_ms + static_ms + sync_ms
    time_ms = busy_ms + demand.wait_ms
    binding = max(roof, key=lambda r: roof[r])
    if static_ms + sync_ms + demand.wait_ms > max(roof.values()):
        binding = "network" if sync_ms > static_ms and kind == "comm.allreduce" else "latency"
    footprint = demand.footprint_at(tp)
    return OpCost(kind=kind, device=device.name, tp=tp, time_ms=time_ms, binding=binding, compute_ms=compute_ms,
                  memory_ms=memory_ms, network_ms=network_ms, static_ms=static_ms, sync_ms=sync_ms,
                  wait_ms=demand.wait_ms, memory_bytes=footprint, fits=footprint <= device.memory_bytes,
                  energy_j=busy_ms / 1e3 * device.tdp_w * tp,
                  usd_per_call=busy_ms / 3.6e6 * usd_per_hr(device, cluster) * tp,
                  host_side=demand.host_side)


def _stream_ms(demand: Demand, device: DeviceSpec, tp: int, working_set: float) -> float:
    """Memory time of one rank's traffic. On a device with a measured copy curve, bytes
    written are priced with the reads they pair with at the copy rate (a write costs a
    CPU more than a read: one thread, and the line is read before it is written), the
    unpaired reads at the read rate; elsewhere all traffic at the read rate."""
    traffic = demand.traffic_at(tp)
    read_rate = device.bandwidth_gbps(working_set) * 1e9 * device.memory_efficiency
    if not device.copy_curve or not demand.bytes_written:
        return traffic / read_rate * 1e3
    written = demand.bytes_written * traffic / demand.memory_traffic  # this rank's share
    read = traffic - written
    paired = min(read, written)
    copy_rate = device.copy_gbps(working_set) * 1e9 * device.memory_efficiency
    return ((read - paired) / read_rate + (paired + written) / copy_rate) * 1e3


def _check_tp(kind: str, device: DeviceSpec, tp: int, loc: SourceLoc | None) -> None:
    if tp == 1:
        return
    if tp not in device.admissible_tp():
        raise CostModelError(f"tp={tp} is not admissible on '{device.name}' "
                             f"(powers of two up to devices_per_chassis={device.devices_per_chassis})", loc)
    if not supports_tp(kind):
        raise CostModelError(f"'{kind}' does not split under tensor parallelism (tp={tp})", loc)


def op_cost(kind: str, attrs: Mapping[str, Any], model: ModelSpec | None, device: DeviceSpec, tp: int = 1,
            cluster: Cluster | None = None, loc: SourceLoc | None = None) -> OpCost:
    """Time, footprint, energy and dollars of one op on `tp` devices of class `device`.
    A matching `[[profile]]` in the cluster replaces the analytic numbers."""
    if cluster is not None:
        prof = profiled_cost(kind, attrs, device, cluster, tp=tp)
        if prof is not None:
            return prof
    if device.is_abstract:
        raise CostModelError(f"device '{device.name}' is abstract and the cluster has no profile for '{kind}'", loc)
    comm_tp = None
    if kind == "comm.allreduce":
        comm_tp = int(_attr(kind, attrs, "tp", loc=loc))
    elif attrs.get("tp") is not None:
        sharded = int(_attr(kind, attrs, "tp", loc=loc))
        if tp not in (1, sharded):
            raise CostModelError(f"'{kind}' is sharded tp={sharded} by the IR; cannot price it at tp={tp}", loc)
        tp, comm_tp = sharded, 1  # the IR's explicit comm.allreduce ops carry the sync
    _check_tp(kind, device, tp, loc)
    demand = op_demand(kind, attrs, model, loc)
    cost = _price(kind, demand, device, tp, cluster, comm_tp)
    if kind in _DECODE_KINDS:
        # The SLA binds the slowest step: the last one, which reads the longest KV.
        last = dict(attrs)
        last["context"] = _attr(kind, attrs, "context", loc=loc) + _attr(kind, attrs, "tokens", loc=loc) - 1
        last["tokens"] = 1
        step = _price(kind, op_demand(kind, last, model, loc), device, tp, cluster, comm_tp)
        cost = replace(cost, tbt_ms=step.time_ms)
    elif kind in _PREFILL_KINDS:
        cost = replace(cost, ttft_ms=cost.time_ms)
    return cost


def batch_sweep(kind: str, attrs: Mapping[str, Any], model: ModelSpec | None, device: DeviceSpec, tp: int,
                cluster: Cluster | None, limit_ms: float | None, max_batch: int, loc: SourceLoc | None = None,
                refine: bool = False):
    """Yield (batch, OpCost) for batch = 1, 2, 4, ... up to `max_batch` while the op fits
    and its SLA-bearing time (TBT for decode, TTFT for prefill) stays within `limit_ms`.
    Both only grow with the batch, so the first failure ends the sweep. Serving picks
    its batch from these (the paper maximises batch under the SLA). `refine`: then also
    yield the largest batch that still passes (bisection between the last power of two
    that passed and the first that failed), so "maximised" means the integer maximum."""
    def cost(b: int):
        c = op_cost(kind, dict(attrs, batch=b), model, device, tp, cluster, loc)
        bound = c.tbt_ms if c.tbt_ms is not None else c.ttft_ms
        ok = c.fits and not (limit_ms is not None and bound is not None and bound > limit_ms)
        return ok, c

    b, good = 1, None
    while b <= max_batch:
        ok, c = cost(b)
        if not ok:
            break
        yield b, c
        good = (b, c)
        b *= 2
    if not refine or good is None:
        return
    lo, hi = good[0], min(b, max_batch + 1)  # lo passes; hi fails or is past the limit
    best = None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok, c = cost(mid)
        if ok:
            lo, best = mid, (mid, c)
        else:
            hi = mid
    if best is not None:
        yield best


def _profile_cost(prof: Profile, kind: str, attrs: Mapping[str, Any], device_name: str, tp: int,
                  hourly: float | None) -> OpCost:
    tokens = float(attrs.get("tokens", 0)) * float(attrs.get("batch", 1))
    waiting = kind in _WAITING_KINDS
    if prof.usd_per_call is not None:
        usd = prof.usd_per_call
    elif prof.usd_per_token is not None:
        usd = prof.usd_per_token * tokens
    elif waiting:
        usd = 0.0
    else:
        usd = prof.latency_ms / 3.6e6 * (hourly or 0.0) * tp
    wait = prof.latency_ms if waiting else 0.0
    fee = usd if waiting else 0.0
    tbt = prof.latency_ms / max(float(attrs.get("tokens", 1)), 1) if kind in _DECODE_KINDS else None
    ttft = prof.latency_ms if kind in _PREFILL_KINDS else None
    return OpCost(kind=kind, device=device_name, tp=tp, time_ms=prof.latency_ms, binding="latency",
                  static_ms=prof.latency_ms - wait, wait_ms=wait, usd_per_call=usd, tbt_ms=tbt, ttft_ms=ttft,
                  profiled=True, fee_usd=fee)


def profiled_cost(kind: str, attrs: Mapping[str, Any], device: DeviceSpec, cluster: Cluster,
                  tp: int = 1) -> OpCost | None:
    """The cluster's measured cost of `kind` on `device`, or None when not profiled.
    `latency_ms` is per call; `usd_per_token` is multiplied by tokens x batch. For tool
    calls and remote-store reads/writes the latency is waited, not paid: their cost is
    the profile's `usd_per_call` (an API fee) or `usd_per_token`, else nothing."""
    prof = cluster.profile_for(kind, device.name)
    if prof is None:
        return None
    hourly = None
    if prof.usd_per_call is None and prof.usd_per_token is None:
        hourly = usd_per_hr(device, cluster)
    return _profile_cost(prof, kind, attrs, device.name, tp, hourly)


def transfer_cost(kind: str, attrs: Mapping[str, Any], model: ModelSpec | None, src: Pool, dst: Pool,
                  cluster: Cluster, loc: SourceLoc | None = None) -> OpCost:
    """Cost of moving an op's payload (kv.transfer: the KV cache; others: `net_bytes`)
    from pool `src` to pool `dst`: a matching from/to profile, else the link's latency
    plus serialisation; nothing within one pool. Network time is not priced in dollars
    here (the planner's gamma weight prices communication)."""
    prof = cluster.transfer_profile(kind, src.device.name, dst.device.name)
    if prof is not None:
        return _profile_cost(prof, kind, attrs, f"{src.device.name}->{dst.device.name}", 1, 0.0)
    nbytes = op_demand(kind, attrs, model, loc).net_bytes
    name = f"{src.name}->{dst.name}"
    if src.name == dst.name:
        return OpCost(kind=kind, device=name, tp=1, time_ms=0.0, binding="network")
    link = cluster.link_between(src.name, dst.name)
    if link is None:
        raise CostModelError(f"pools '{src.name}' and '{dst.name}' are not linked in cluster '{cluster.name}'", loc)
    t = transfer_ms(nbytes, link)
    return OpCost(kind=kind, device=name, tp=1, time_ms=t, binding="network" if t > link.latency_ms * 2 else "latency",
                  network_ms=t - link.latency_ms, static_ms=link.latency_ms)
