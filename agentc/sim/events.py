"""Dynamic scenarios for `agentc simulate --events FILE.toml`: load steps and ramps,
and pools losing devices, at given times.

```toml
[[load]]          # from at_s on, the arrival rate is rps (a step) ...
at_s = 60
rps = 40
[[load]]          # ... or reaches it linearly over ramp_s seconds (a ramp)
at_s = 120
rps = 10
ramp_s = 30
[[loss]]          # devices of a pool stop taking work (what they run finishes)
at_s = 90
pool = "b200"
devices = 1
```

Before the first `[[load]]` the rate is `--load` (or the program's `load` clause).
Arrivals follow the time-varying rate as a non-homogeneous Poisson process, drawn by
thinning a Poisson stream at the highest rate. Mistakes are errors at their
`file:line:col`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agentc.catalog.toml_source import TomlFile
from agentc.diagnostics import SimulationInputError, SourceLoc
from agentc.sim.arrivals import Arrival
from agentc.sim.model import Loss

_KEYS = {"load": {"at_s": True, "rps": True, "ramp_s": False},
         "loss": {"at_s": True, "pool": True, "devices": True}}


@dataclass(frozen=True)
class LoadChange:
    t_ms: float
    rps: float
    ramp_ms: float = 0.0


@dataclass(frozen=True)
class Scenario:
    path: str
    loads: tuple[LoadChange, ...]
    losses: tuple[Loss, ...]
    loss_locs: tuple[SourceLoc, ...] = ()

    def rate_at(self, base_rps: float, t_ms: float) -> float:
        """The arrival rate (req/s) at `t_ms`."""
        rate = base_rps
        for c in self.loads:
            if t_ms < c.t_ms:
                break
            if c.ramp_ms > 0 and t_ms < c.t_ms + c.ramp_ms:
                return rate + (c.rps - rate) * (t_ms - c.t_ms) / c.ramp_ms
            rate = c.rps
        return rate

    def peak(self, base_rps: float) -> float:
        return max([base_rps] + [c.rps for c in self.loads])


def _number(tf: TomlFile, table: str, index: int, entry: dict, key: str, *, positive: bool = False,
            integer: bool = False) -> float:
    loc = tf.loc((table,), key, index)
    x = entry[key]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or (integer and not isinstance(x, int)):
        raise SimulationInputError(f"'{key}' must be {'an integer' if integer else 'a number'}, got {x!r}", loc)
    if not math.isfinite(x) or x < 0 or (positive and x <= 0):
        raise SimulationInputError(f"'{key}' must be {'positive' if positive else 'non-negative'}, got {x!r}", loc)
    return float(x)


def read(path: str) -> Scenario:
    """The scenario of an events TOML file (see the module docstring)."""
    tf = TomlFile(path, "events file")
    data = tf.data
    for key in data:
        if key not in _KEYS:
            raise SimulationInputError(f"unknown entry '{key}' in an events file; it has [[load]] and [[loss]] tables",
                                       tf.loc((), key) if not isinstance(data[key], list) else tf.loc((key,)))
    entries: dict[str, list[dict]] = {}
    for table, keys in _KEYS.items():
        items = data.get(table, [])
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            raise SimulationInputError(f"'{table}' must be an array of tables: write [[{table}]]", tf.loc((), table))
        for i, entry in enumerate(items):
            for key in entry:
                if key not in keys:
                    raise SimulationInputError(f"unknown key '{key}' in [[{table}]]; it takes "
                                               f"{', '.join(sorted(keys))}", tf.loc((table,), key, i))
            for key, required in keys.items():
                if required and key not in entry:
                    raise SimulationInputError(f"[[{table}]] needs '{key}'", tf.loc((table,), None, i))
        entries[table] = items
    loads, last = [], -1.0
    for i, e in enumerate(entries["load"]):
        t = _number(tf, "load", i, e, "at_s")
        if t < last:
            raise SimulationInputError(f"[[load]] changes must come in time order: at_s {t:g} after {last:g}",
                                       tf.loc(("load",), "at_s", i))
        last = t
        ramp = _number(tf, "load", i, e, "ramp_s") if "ramp_s" in e else 0.0
        loads.append(LoadChange(t * 1e3, _number(tf, "load", i, e, "rps", positive=True), ramp * 1e3))
    losses, locs = [], []
    for i, e in enumerate(entries["loss"]):
        if not isinstance(e["pool"], str):
            raise SimulationInputError(f"'pool' must be a pool name, got {e['pool']!r}", tf.loc(("loss",), "pool", i))
        losses.append(Loss(_number(tf, "loss", i, e, "at_s") * 1e3, e["pool"],
                           int(_number(tf, "loss", i, e, "devices", positive=True, integer=True))))
        locs.append(tf.loc(("loss",), "pool", i))
    order = sorted(range(len(losses)), key=lambda k: (losses[k].t_ms, k))
    return Scenario(path, tuple(loads), tuple(losses[k] for k in order), tuple(locs[k] for k in order))


def check(scenario: Scenario, plan) -> None:
    """Each loss names a pool of the plan and leaves it the devices its widest op needs."""
    left = dict(plan.pools)
    widest: dict[str, int] = {}
    for op in plan.ops.values():
        widest[op.pool] = max(widest.get(op.pool, 1), op.tp)
    for loss, loc in zip(scenario.losses, scenario.loss_locs):
        if loss.pool not in left:
            raise SimulationInputError(f"the plan has no pool '{loss.pool}'; its pools: {', '.join(sorted(left))}",
                                       loc)
        left[loss.pool] -= loss.devices
        if left[loss.pool] < widest.get(loss.pool, 1):
            raise SimulationInputError(
                f"losing {loss.devices} device(s) of pool '{loss.pool}' leaves {max(left[loss.pool], 0)}, fewer than "
                f"the {widest.get(loss.pool, 1)} its widest op needs; requests would wait forever", loc)


def arrivals(scenario: Scenario, base_rps: float, rng: np.random.Generator, requests: int | None = None,
             duration_s: float | None = None) -> list[Arrival]:
    """Poisson arrivals whose rate follows the scenario: `requests` of them, or all
    within `duration_s` (thinning a stream at the peak rate)."""
    if not base_rps > 0 or not math.isfinite(base_rps):
        raise SimulationInputError(f"the load must be a positive rate, got {base_rps:g} req/s")
    peak = scenario.peak(base_rps)
    gap = 1e3 / peak
    end = math.inf if duration_s is None else duration_s * 1e3
    out: list[Arrival] = []
    t = 0.0
    while requests is None or len(out) < requests:
        block = max(64, (requests or 0) - len(out))
        times = t + np.cumsum(rng.exponential(gap, size=block))
        keep = rng.random(block)
        for x, u in zip(times.tolist(), keep.tolist()):
            if x > end:
                return out
            if u * peak < scenario.rate_at(base_rps, x):
                out.append(Arrival(x))
                if requests is not None and len(out) >= requests:
                    return out
        t = float(times[-1])
    return out
