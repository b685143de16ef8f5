"""Re-planning inside a simulation (`agentc simulate --events F --replan-every S`):
a controller that watches what a running system would see and re-plans when it moves.

Every S simulated seconds it measures the arrival rate over the last S seconds and
reads each pool's inventory after the losses so far. It re-plans when devices were
lost since the plan in force was made, or when the rate left the one the plan was
made for by more than `RATE_THRESHOLD` (relative) and by more than `NOISE_SIGMAS`
Poisson standard deviations (a Poisson count over S s varies by sqrt(count), which at
low rates or short periods is itself over the threshold). The re-plan is `agentc
replan` (movement penalty on) onto a cluster file written from the current inventory
(the plan's own cluster file with each pool's count less its lost devices), stopping
at the placement (no code). After a load change it plans for the measured rate times
the headroom: the planner sizes pools for the mean rate with no queueing margin, and
a plan made for exactly the measured rate still misses the SLA in the simulation
(docs/simulate.md has the figures). After a loss alone it keeps the load the running
plan was made for. The new plan applies to arrivals from `switch delay` later; no
other re-plan starts while one is pending. A re-plan that finds no plan is recorded
and the running plan stays.

Every re-plan is a pure function of the manifest in force, the inventory and the rate
(the solver is deterministic on a given problem), so a seed still fixes the output.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field

from agentc.diagnostics import AgentcError, UsageError, locate_in_file

DEFAULT_SWITCH_DELAY_S = 30.0   # draining, starting replicas, loading weights
RATE_THRESHOLD = 0.25           # relative change of the measured rate that re-plans
NOISE_SIGMAS = 3.0              # ... and beyond this many Poisson standard deviations
DEFAULT_HEADROOM = 1.5          # a load re-plan is made for the measured rate times this


@dataclass
class Replan:
    t_s: float
    trigger: str                  # "load", "loss" or "load+loss"
    measured_rps: float
    planned_rps: float            # the load the new plan is made for (measured x headroom on a load change)
    applied_s: float | None       # when the new plan takes arrivals (None: no plan found)
    ops_moved: int = 0
    devices_before: dict = field(default_factory=dict)
    devices_after: dict = field(default_factory=dict)
    usd_per_hr_before: float | None = None
    usd_per_hr_after: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def load(source: str, cluster: str | None, catalogs: tuple[str, ...]):
    """(Plan, manifest, program file, cluster file) of what `simulate` re-plans: a
    `.agent` file planned in memory on `cluster`, or a compiled manifest whose program
    and cluster file are found by their recorded sha256 (located errors otherwise)."""
    from agentc.catalog.catalogs import package_file
    from agentc.cli.replan import find_source, load_manifest
    from agentc.sim import plan

    if os.path.isdir(source) or source.endswith(".json"):
        if cluster is not None:
            raise UsageError("--cluster applies when compiling a .agent file; a manifest is already placed")
        path, m = load_manifest(source)
        return plan.from_manifest(m, path), m, find_source(path, m, None), find_cluster(m, path)
    if not os.path.isfile(source):
        raise UsageError(f"no such file: '{source}'")
    m = plan.compile_manifest(source, cluster, catalogs)
    return plan.from_manifest(m, source), m, source, cluster or package_file("default_cluster.toml")


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def find_cluster(manifest: dict, path: str) -> str:
    """The cluster file a manifest was planned on: the entry of its `inputs` that is a
    cluster TOML with the recorded sha256 (shipped files as `<agentc>/catalog/...`,
    others relative to the working directory, the manifest's folder or the one above)."""
    import tomllib

    from agentc.catalog.catalogs import package_file

    here = os.path.dirname(os.path.abspath(path))
    for entry in manifest.get("inputs", [])[1:]:
        rel = entry.get("path", "") if isinstance(entry, dict) else ""
        if not rel.endswith(".toml"):
            continue
        if rel.startswith("<agentc>/catalog/"):
            cands = [package_file(rel[len("<agentc>/catalog/"):])]
        else:
            cands = [rel, os.path.join(here, rel), os.path.join(os.path.dirname(here), rel)]
        for cand in cands:
            if os.path.isfile(cand) and _sha(cand) == entry.get("sha256"):
                with open(cand, "rb") as f:
                    if "pool" in tomllib.load(f):
                        return cand
    raise UsageError("cannot find the cluster file this manifest was planned on (with its recorded sha256); "
                     "re-planning needs it", locate_in_file(path, '"inputs"') if os.path.isfile(path) else None,
                     ("simulate the .agent source with --cluster FILE instead",))


def write_cluster(base: str, counts: dict[str, int], dest: str) -> None:
    """`base` with each pool's device count replaced (a pool with none left is dropped
    with its links); relative device files are made absolute, as `dest` lives elsewhere."""
    import tomllib

    import tomli_w

    with open(base, "rb") as f:
        data = tomllib.load(f)
    pools = []
    for p in data.get("pool", []):
        n = counts.get(p.get("name"), p.get("count"))
        if n > 0:
            pools.append({**p, "count": n, **({"nodes": min(p["nodes"], n)} if "nodes" in p else {})})
    names = {p["name"] for p in pools}
    data["pool"] = pools
    if "link" in data:
        data["link"] = [x for x in data["link"] if x.get("a") in names and x.get("b") in names]
    if "device_files" in data:
        data["device_files"] = [p if os.path.isabs(p) else os.path.join(os.path.dirname(os.path.abspath(base)), p)
                                for p in data["device_files"]]
    with open(dest, "wb") as f:
        tomli_w.dump(data, f)


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def usd_per_hr(totals: dict, rps: float) -> float | None:
    """A plan's $/hr: its own under a load; a plan priced per request (no load clause)
    costs its $/request at the rate it serves."""
    if totals.get("usd_per_hr") is not None:
        return float(totals["usd_per_hr"])
    if totals.get("usd_per_request") is not None:
        return float(totals["usd_per_request"]) * rps * 3600.0
    return None


class Replanner:
    """The controller's `decide`: see the module docstring."""

    def __init__(self, manifest: dict, source: str, cluster: str, arrivals, every_ms: float, delay_ms: float,
                 made_for_rps: float, catalogs: tuple[str, ...] = (), headroom: float = DEFAULT_HEADROOM):
        self.manifest, self.source, self.cluster, self.catalogs = manifest, source, cluster, catalogs
        self.every_ms, self.delay_ms, self.headroom = every_ms, delay_ms, headroom
        self.times = [a.t_ms for a in arrivals]
        self.made_for = made_for_rps                       # the rate the plan in force serves
        self.planned_load = manifest["sla"].get("load_rps") or made_for_rps   # the load it was planned at
        self.inventory = {p["name"]: int(p["count"]) for p in manifest["cluster"]["pools"]}
        self.lost_seen: dict[str, int] = {}
        self.pending_until = -math.inf
        self.replans: list[Replan] = []
        self.in_force: list[tuple[float, dict]] = [(0.0, manifest["totals"])]   # (from ms, totals)
        self.plan_source = None

    def decide(self, sim):
        now = sim.env.now
        if now < self.pending_until:
            return None
        n = bisect.bisect_right(self.times, now) - bisect.bisect_right(self.times, now - self.every_ms)
        measured = n / (self.every_ms / 1e3)
        expected = self.made_for * self.every_ms / 1e3
        moved = abs(n - expected) > max(RATE_THRESHOLD * expected, NOISE_SIGMAS * math.sqrt(max(expected, 1.0)))
        lost = {name: sum(k for _t, k in pool.stats.lost) for name, pool in sim.pools.items() if pool.stats.lost}
        new_loss = lost != self.lost_seen
        if not (moved or new_loss):
            return None
        self.lost_seen = lost
        trigger = "+".join(w for w, on in (("load", moved), ("loss", new_loss)) if on)
        # a load change plans for the measured rate with headroom; a loss alone keeps the
        # load the running plan was made for
        load = _round(measured * self.headroom) if moved else self.planned_load
        old = self.manifest
        rec = Replan(now / 1e3, trigger, _round(measured), load, None,
                     devices_before=dict(sorted(old["totals"].get("devices", {}).items())),
                     usd_per_hr_before=usd_per_hr(old["totals"], self.made_for))
        if moved:   # a failed re-plan is not retried until things move again
            self.made_for = _round(measured)
        self.planned_load = load
        self.replans.append(rec)
        try:
            new = self._replan(load, lost)
        except AgentcError as e:
            rec.error = e.message.splitlines()[0]
            return None
        before = {o["id"]: o["pool"] for o in old["ops"]}
        rec.ops_moved = sum(1 for o in new["ops"] if before.get(o["id"], o["pool"]) != o["pool"])
        rec.devices_after = dict(sorted(new["totals"].get("devices", {}).items()))
        rec.usd_per_hr_after = usd_per_hr(new["totals"], self.made_for)
        rec.applied_s = (now + self.delay_ms) / 1e3
        self.manifest = new
        self.pending_until = now + self.delay_ms
        self.in_force.append((now + self.delay_ms, new["totals"]))
        from agentc.sim.plan import from_manifest

        sim.switch(from_manifest(new, sim.plan.source), self.delay_ms)
        return None

    def _replan(self, rate: float, lost: dict[str, int]) -> dict:
        from agentc.cli.replan import replan_compile

        counts = {name: n - lost.get(name, 0) for name, n in self.inventory.items()}
        with tempfile.TemporaryDirectory(prefix="agentc-replan-") as tmp:
            mpath, cpath = os.path.join(tmp, "manifest.json"), os.path.join(tmp, "cluster.toml")
            with open(mpath, "w", encoding="utf-8") as f:
                json.dump(self.manifest, f)
            write_cluster(self.cluster, counts, cpath)
            try:
                _c, _old, new, _res, _ = replan_compile(mpath, cpath, load=rate, source=self.source,
                                                        catalogs=self.catalogs, targets=(), plan_only=True)
            except AgentcError as e:
                e.message = e.message.replace(tmp + os.sep, "")
                raise
        return new

    def cost_per_window(self, start_ms: float, end_ms: float, rps: float) -> float | None:
        """Time-weighted $/hr of the plans in force over [start, end)."""
        total, span = 0.0, end_ms - start_ms
        for i, (t, totals) in enumerate(self.in_force):
            t_next = self.in_force[i + 1][0] if i + 1 < len(self.in_force) else math.inf
            a, b = max(t, start_ms), min(t_next, end_ms)
            if b > a:
                c = usd_per_hr(totals, rps)
                if c is None:
                    return None
                total += c * (b - a)
        return total / span if span > 0 else None


def compare(static, replanned, replanner: Replanner, window_ms: float) -> dict:
    """The `replanning` section of the report: each re-plan, and per window of arrivals
    SLA attainment and $/hr with and without re-planning (same seed, same events)."""
    from agentc.sim import report

    times = replanner.times

    def runs(result, cost):
        out = {}
        for k, w in enumerate(report.windows(result, window_ms)):
            a, b = w["start_s"] * 1e3, w["end_s"] * 1e3
            rps = (bisect.bisect_left(times, b) - bisect.bisect_left(times, a)) / (window_ms / 1e3)  # all arrivals
            out[w["start_s"]] = {"requests": w["requests"], "sla_attained": w["sla_attained"],
                                 "e2e_p99_ms": w["e2e_p99_ms"], "usd_per_hr": report._r(cost(a, b, rps))}
        return out

    first = replanner.in_force[0][1]
    a = runs(static, lambda _s, _e, rps: usd_per_hr(first, rps))
    b = runs(replanned, replanner.cost_per_window)
    windows = [{"start_s": k, "end_s": report._r(k + window_ms / 1e3), "static": a.get(k), "replanned": b.get(k)}
               for k in sorted(set(a) | set(b))]
    total = {}
    for name, result in (("static", static), ("replanned", replanned)):
        s = report.summarize(result)
        total[name] = {"sla_attained": s["sla_attained"], "goodput_rps": s["goodput_rps"]}
    return {"every_s": report._r(replanner.every_ms / 1e3), "switch_delay_s": report._r(replanner.delay_ms / 1e3),
            "rate_threshold": RATE_THRESHOLD, "noise_sigmas": NOISE_SIGMAS, "headroom": replanner.headroom,
            "replans": [r.to_dict() for r in replanner.replans], "windows": windows, **total}


def print_table(section: dict, console) -> None:
    from rich.table import Table

    def devices(d: dict) -> str:
        return " ".join(f"{k}:{v}" for k, v in d.items()) or "-"

    def pct(x) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def usd(x) -> str:
        return "-" if x is None else f"{x:.4g}"

    t = Table(title=f"re-plans (every {section['every_s']:g} s, switch delay {section['switch_delay_s']:g} s)")
    for c in ("at s", "trigger", "measured req/s", "planned for", "applied at s", "ops moved", "devices before",
              "devices after", "$/hr before", "$/hr after"):
        t.add_column(c, justify="left" if c in ("trigger", "devices before", "devices after") else "right")
    for r in section["replans"]:
        t.add_row(f"{r['t_s']:g}", r["trigger"], f"{r['measured_rps']:g}", f"{r['planned_rps']:g}",
                  "no plan" if r["applied_s"] is None else f"{r['applied_s']:g}", str(r["ops_moved"]),
                  devices(r["devices_before"]), devices(r["devices_after"]) if r["error"] is None else r["error"],
                  usd(r["usd_per_hr_before"]), usd(r["usd_per_hr_after"]))
    console.print(t if section["replans"] else "no re-plan: the rate stayed within the threshold and no device was lost")
    w = Table(title="SLA met (every term) and $/hr of the plan in force, by window of arrivals")
    for c in ("window s", "requests", "static met", "static $/hr", "re-planned met", "re-planned $/hr"):
        w.add_column(c, justify="left" if c == "window s" else "right")
    for row in section["windows"]:
        a, b = row["static"] or {}, row["replanned"] or {}
        w.add_row(f"{row['start_s']:g}-{row['end_s']:g}", str(b.get("requests", a.get("requests", 0))),
                  pct(a.get("sla_attained")), usd(a.get("usd_per_hr")), pct(b.get("sla_attained")),
                  usd(b.get("usd_per_hr")))
    console.print(w)
    console.print(f"SLA met over the run: static {pct(section['static']['sla_attained'])}, "
                  f"re-planned {pct(section['replanned']['sla_attained'])}")
