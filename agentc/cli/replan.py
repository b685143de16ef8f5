"""`agentc replan`: a new plan for a running one after the cluster, the load or the
measured op times changed, moving as little as pays (agentc/planner/replan.py).

The manifest names its source (`inputs[0]`, with its sha256) and how it was planned
(objective, SLA mode, worst case, pricing). The source is compiled again on the new
cluster up to `costed`; the module is then adjusted (`--load` replaces the program's
load, `--trace` scales each measured op's costs on the measured device class by
measured / planned), and the rest of the pipeline runs with the movement-penalised
solver in place of the plain one. The output directory is a whole compile output
(what `agentc compile -o` writes, so `agentc deploy` and `agentc simulate` read it)
plus `replan.json`: the diff against the old manifest, the measurements used and
the one-time cost of the move.
"""

from __future__ import annotations

import hashlib
import json
import os

import click

from agentc import outputs
from agentc.cli._common import _finite, guarded
from agentc.diagnostics import AgentcError, SourceLoc, UsageError, locate_in_file

REPLAN_FILE = "replan.json"


# ---------------------------------------------------------------------------- reading the old plan

def load_manifest(path: str) -> tuple[str, dict]:
    """The manifest at `path` (a compile output directory or its manifest.json), of
    exactly the schema this agentc writes: a re-plan compares plans field by field."""
    from agentc.targets.manifest import SCHEMA_VERSION

    if os.path.isdir(path):
        path = os.path.join(path, "manifest.json")
    if not os.path.isfile(path):
        raise UsageError(f"no manifest at '{path}'; pass an `agentc compile -o DIR` output directory or "
                         "its manifest.json")
    from agentc.inputs import read_source

    text = read_source(path, "manifest", error=UsageError)
    try:
        m = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"'{path}' is not JSON: {e.msg}", SourceLoc(path, e.lineno, e.colno)) from None
    if not isinstance(m, dict) or "schema_version" not in m:
        raise UsageError(f"'{path}' is not an agentc manifest (no schema_version)", SourceLoc(path, 1, 1))
    if m["schema_version"] != SCHEMA_VERSION:
        raise UsageError(f"manifest schema version {m['schema_version']!r}; this agentc re-plans "
                         f"{SCHEMA_VERSION!r} manifests", locate_in_file(path, '"schema_version"'),
                         ("compile the source again with this agentc, then re-plan its manifest",))
    shapes = {"ops": list, "cluster": dict, "totals": dict, "sla": dict, "inputs": list, "objective": str}
    for key, kind in shapes.items():
        if not isinstance(m.get(key), kind):
            raise UsageError(f"the manifest has no '{key}' {kind.__name__}; was it written by `agentc compile`?",
                             locate_in_file(path, f'"{key}"'))
    pools = m["cluster"].get("pools")
    if not isinstance(pools, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str)
                                              and isinstance(p.get("count"), int) for p in pools):
        raise UsageError("the manifest's cluster pools lack a name or count", locate_in_file(path, '"pools"'))
    names = {p["name"] for p in pools}
    for o in m["ops"]:
        ok = (isinstance(o, dict) and isinstance(o.get("id"), str) and isinstance(o.get("pool"), str)
              and o["pool"] in names
              and all(isinstance(o.get(k), int) for k in ("tp", "replicas"))
              and isinstance(o.get("est_latency_ms"), (int, float)))
        if not ok:
            where = o.get("id") if isinstance(o, dict) else None
            raise UsageError(f"the manifest's op {where!r} lacks an id, a known pool, tp, replicas or "
                             "est_latency_ms", locate_in_file(path, f'"{where}"') if isinstance(where, str)
                             else locate_in_file(path, '"ops"'))
    devices = m["totals"].get("devices")
    if not isinstance(devices, dict) or not all(isinstance(v, int) for v in devices.values()):
        raise UsageError("the manifest's totals.devices must map pools to device counts",
                         locate_in_file(path, '"devices"'))
    if not m["inputs"] or not all(isinstance(i, dict) and isinstance(i.get("path"), str) for i in m["inputs"]):
        raise UsageError("the manifest names no source in 'inputs'", locate_in_file(path, '"inputs"'))
    for where, key, allowed in ((m["sla"], "mode", ("hard", "soft")), (m["sla"], "worst_case", (True, False)),
                                (m, "objective", ("cost", "latency", "tokens-per-dollar")),
                                (m["cluster"], "pricing", ("tco", "capex", "given"))):
        if where.get(key) not in allowed:
            raise UsageError(f"the manifest's '{key}' is {where.get(key)!r}; expected one of "
                             f"{', '.join(map(str, allowed))}", locate_in_file(path, f'"{key}"'))
    return path, m


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def find_source(path: str, m: dict, given: str | None) -> str:
    """The program the manifest was compiled from: `--source`, else its recorded path
    (relative to the working directory, then to the manifest's folder and the one above
    it), else the file its ops' source locations name, when the file there has the
    recorded sha256."""
    if given is not None:
        if not os.path.isfile(given):
            raise UsageError(f"no such file: '{given}'")
        return given
    entry = m["inputs"][0]
    rel = entry["path"]
    here = os.path.dirname(os.path.abspath(path))
    tried = []
    located = sorted({o["loc"].rsplit(":", 2)[0] for o in m["ops"]
                      if isinstance(o.get("loc"), str) and o["loc"].count(":") >= 2})
    cands = [rel, os.path.join(here, rel), os.path.join(os.path.dirname(here), rel)]
    cands += [p for p in located if os.path.basename(p) == os.path.basename(rel)]
    for cand in cands:
        if cand in tried or not os.path.isfile(cand):
            continue
        tried.append(cand)
        if _sha(cand) == entry.get("sha256"):
            return cand
    why = ("a file there differs from the one compiled (sha256)" if tried else "no such file")
    raise UsageError(f"cannot find the source '{rel}' this manifest was compiled from: {why}",
                     locate_in_file(path, json.dumps(rel)),
                     ("pass --source FILE to re-plan it from that file",))


# ---------------------------------------------------------------------------- measured costs

_SCALED = ("time_ms", "busy_ms", "ttft_ms", "tbt_ms", "energy_j")


def apply_measurements(measured, old: dict, labels: dict, trace: str) -> list[dict]:
    """Scale each measured op's `costs` on the measured pool's device class by measured
    / planned (the plan's `est_latency_ms` when the trace was taken): the cost model was
    off by that factor for that op on that device, whatever its tp or pool. Device time
    and the dollars paid for it scale alike; a fee (an API charge) does not."""
    from mlir import ir

    from agentc.frontend.lower import attrs
    from agentc.passes._ir import get

    old_ops = {o["id"]: o for o in old["ops"]}
    classes = {p["name"]: p.get("device") for p in old["cluster"]["pools"]}
    applied = []
    for meas in measured:
        entry = old_ops.get(meas.op)
        if entry is None or meas.op not in labels:
            raise UsageError(f"the trace measures op '{meas.op}', which is not an op of this plan",
                             locate_in_file(trace, json.dumps(meas.op)))
        if meas.pool not in classes:
            raise UsageError(f"the trace measures pool '{meas.pool}', which is not a pool of this plan",
                             locate_in_file(trace, json.dumps("pool " + meas.pool)))
        if meas.pool != entry["pool"]:
            raise UsageError(f"the trace measures op '{meas.op}' on pool '{meas.pool}'; this plan runs it on "
                             f"'{entry['pool']}' (a trace of another plan?)",
                             locate_in_file(trace, json.dumps(meas.op)))
        planned = float(entry["est_latency_ms"])
        if planned <= 0:
            continue  # nothing to scale (a free op): its measured time is reported, not applied
        factor = meas.median_ms / planned
        op = labels[meas.op]
        costs = []
        for c in get(op, "costs"):
            c = dict(c)
            if c.get("device") == classes[meas.pool]:
                for key in _SCALED:
                    if isinstance(c.get(key), (int, float)) and not isinstance(c.get(key), bool):
                        c[key] = float(c[key]) * factor
                fee = float(c.get("fee_usd", 0.0))
                c["usd_per_call"] = (float(c["usd_per_call"]) - fee) * factor + fee
            costs.append(ir.DictAttr.get(attrs(**c)))
        op.attributes["costs"] = ir.ArrayAttr.get(costs)
        applied.append({"op": meas.op, "pool": meas.pool, "device": classes[meas.pool], "samples": meas.samples,
                        "planned_ms": planned, "measured_ms": round(meas.median_ms, 6),
                        "factor": float(f"{factor:.6g}")})
    return applied


# ---------------------------------------------------------------------------- the command

def replan_compile(manifest: str, cluster: str, *, load=None, trace=None, penalty=True, horizon_h=1.0,
                   source=None, catalogs=(), pricing=None, lam=1e3, targets=("cpu", "nvvm", "rocdl"),
                   progress=None, plan_only=False):
    """Re-plan the manifest's program on `cluster`; returns (compilation, old manifest,
    new manifest, Replanned, measurements applied). Raises AgentcError, located.
    `plan_only` stops at the placement and builds the manifest in memory (no code: what
    the simulator's re-planning needs, in a fraction of the time)."""
    from mlir import ir

    from agentc import pipeline
    from agentc.cli._common import make_options
    from agentc.passes import place
    from agentc.passes._plan_ctx import entry_graph, model_for, models_of
    from agentc.planner import replan

    path, old = load_manifest(manifest)
    src = find_source(path, old, source)
    opts = make_options(emit="costed", cluster=cluster, catalogs=tuple(catalogs), objective=old["objective"],
                        sla_mode=old["sla"]["mode"], worst_case=bool(old["sla"]["worst_case"]),
                        pricing=pricing or old["cluster"].get("pricing"), lam=lam, targets=tuple(targets))
    try:
        c = pipeline.compile_file(src, opts, progress=progress)
        with c.ctx, ir.Location.unknown():
            graph = entry_graph(c.module)
            if load is not None:
                graph.attributes["load_rps"] = ir.FloatAttr.get(ir.F64Type.get(), float(load))
            _, g, _, _ = place.build_problem(c.module, c.pass_ctx)   # names the ops (op_id)
            labels = {op.attributes["op_id"].value: op for op, _ in g.ops}
            applied = []
            if trace is not None:
                from agentc.planner.feedback import read_trace

                applied = apply_measurements(read_trace(trace), old, labels, trace)
                c.pass_ctx.files.append(trace)
            models = models_of(c.module)
            weight_bytes = {op_id: model.weight_bytes for op_id, op in labels.items()
                            if (model := model_for(op, models)) is not None}
        previous = replan.Previous(replan.placements(old))
        movement = replan.Movement(horizon_h=horizon_h) if penalty else None
        result = []

        def solver(problem):
            result.append(replan.solve(problem, previous, movement, weight_bytes))
            return result[-1].plan

        c.pass_ctx.solver = solver
        c.options.emit = pipeline.PLACED if plan_only else None
        pipeline.resume(c, progress)
    except AgentcError as e:
        e.notes = e.notes + (f"while re-planning '{path}' onto cluster '{cluster}'",)
        raise
    if plan_only:
        from agentc.targets import manifest as manifest_json

        new = json.loads(manifest_json.dumps(manifest_json.build(c)))
    else:
        new = json.loads(c.artifacts["manifest.json"])
    # the last solve's: the placed stage may solve again until the plan's prediction
    # holds its SLA (agentc/promise.py), and the plan written is the last one
    return c, old, new, result[-1], applied


@click.command("replan")
@click.argument("manifest", type=click.Path())
@click.option("--cluster", required=True, type=click.Path(dir_okay=False),
              help="The new cluster inventory TOML. Example: --cluster fleet-after-loss.toml")
@click.option("--load", type=click.FloatRange(min=0, max=1e9), default=None, callback=_finite,
              help="New arrival rate in req/s (default: the program's load clause).")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="Chrome trace of the running plan (agentc simulate -o, agentc run --trace): each op's "
                   "median measured time replaces its planned one (docs/replan.md).")
@click.option("--no-movement-penalty", "no_penalty", is_flag=True,
              help="Plan from scratch: moving ops costs nothing (the plain optimum on the new cluster).")
@click.option("--horizon", "horizon_h", type=click.FloatRange(min=0, min_open=True, max=1e6), default=1.0,
              callback=_finite,
              show_default=True, help="Hours within which a move must pay for itself.")
@click.option("--source", type=click.Path(dir_okay=False), default=None,
              help="The program to re-plan (default: the manifest's source, checked by sha256).")
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(dir_okay=False),
              help="Extra device/model catalog TOML; repeatable.")
@click.option("--pricing", type=click.Choice(["tco", "capex", "given"]), default=None,
              help="Device pricing (default: the manifest's, so costs compare).")
@click.option("--lambda", "lam", type=click.FloatRange(min=0.0, max=1e12), default=1e3, show_default=True,
              callback=_finite,
              help="Penalty per ms of SLA violation in soft mode.")
@click.option("--targets", default="cpu,nvvm,rocdl", show_default=True,
              help="Code-generation targets to build, comma separated.")
@click.option("-o", "--output", default="replan", show_default=True, type=click.Path(),
              help="Output directory: a whole compile output plus replan.json (replaced as a whole).")
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@guarded
def replan_cmd(manifest, cluster, load, trace, no_penalty, horizon_h, source, catalogs, pricing, lam, targets,
               output, as_json, quiet):
    """Re-plan a compiled plan (MANIFEST: an `agentc compile -o` directory or its manifest.json)
    after devices, load or measured op times changed; print what moves and write the new plan.

    \b
    Examples:
      agentc replan out/ --cluster fleet-minus-one-gpu.toml -o out2/
      agentc replan out/manifest.json --cluster fleet.toml --load 20 --json
      agentc replan out/ --cluster fleet.toml --trace sim/trace.json -o out2/
      agentc deploy out2/ --format ray-serve -o deploy/
    """
    from agentc import report

    target_list = tuple(t.strip() for t in targets.split(",") if t.strip())
    for t in target_list:
        if t not in ("cpu", "nvvm", "rocdl"):
            raise UsageError(f"unknown target '{t}'; targets: cpu, nvvm, rocdl")
    outputs.check_replaceable(output, "-o")
    outputs.check_writable(output)
    with report.progress(quiet or as_json) as step:
        c, old, new, result, applied = replan_compile(
            manifest, cluster, load=load, trace=trace, penalty=not no_penalty, horizon_h=horizon_h, source=source,
            catalogs=catalogs, pricing=pricing, lam=lam, targets=target_list, progress=step)
    from agentc.planner import replan

    d = replan.diff(old, new)
    doc = {"diff": d.to_dict(), "movement_penalty": not no_penalty, "horizon_h": horizon_h,
           "movement_usd": float(f"{result.movement_usd:.6g}") if result.penalised else None,
           "measured": applied, "status": new["solver"]["status"]}
    files, (dest, payload) = outputs.collect_outputs(c, output)
    payload[REPLAN_FILE] = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    outputs.write_outputs(payload, dest)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    elif not quiet:
        print_diff(doc, dest)


def print_diff(doc: dict, dest: str) -> None:
    """The diff for people: ops that change, devices per pool, cost and SLA before/after."""
    from rich.table import Table

    from agentc.report import console, num

    out = console()
    d = doc["diff"]
    out.print(f"agentc: re-planned to {dest.rstrip('/')}/ ({doc['status']}"
              + ("" if doc["movement_penalty"] else ", no movement penalty") + ")")
    if d["empty"]:
        out.print("nothing moves: every op keeps its pool, tp and replicas")
    if d["ops"]:
        t = Table("op", "from pool", "to pool", "tp", "replicas", title="ops that change")
        for o in d["ops"]:
            b, a = o["before"] or {}, o["after"] or {}
            t.add_row(o["op"], _where(b, "(new)"), _where(a, "(gone)"), f"{_each(b, 'tp')} -> {_each(a, 'tp')}",
                      f"{_each(b, 'replicas')} -> {_each(a, 'replicas')}")
        out.print(t)
    rows = [(p, "inventory", v) for p, v in d["inventory"].items()] + [(p, "used", v) for p, v in d["devices"].items()]
    if rows:
        t = Table("pool", "devices", "before", "after", "change", title="devices")
        for pool, what, v in sorted(rows):
            t.add_row(pool, what, str(v["before"]), str(v["after"]), f"{v['after'] - v['before']:+d}")
        out.print(t)
    t = Table("figure", "before", "after", title="cost and SLA")
    sla = d["sla"]
    bounds = {"e2e_ms": sla.get("e2e_ms"), "ttft_ms": sla.get("ttft_ms"), "tbt_ms": sla.get("tbt_ms")}
    for key, v in d["totals"].items():
        if v["before"] is None and v["after"] is None:
            continue
        label = key + (f" (SLA {num(bounds[key])})" if bounds.get(key) is not None else "")
        t.add_row(label, num(v["before"]), num(v["after"]))
    if sla.get("load_rps") != sla.get("load_rps_before"):
        t.add_row("load_rps", num(sla.get("load_rps_before")), num(sla.get("load_rps")))
    out.print(t)
    if doc["measured"]:
        t = Table("op", "pool", "samples", "planned ms", "measured ms", "factor", title="measured (median per op)")
        for m in doc["measured"]:
            t.add_row(m["op"], m["pool"], str(m["samples"]), num(m["planned_ms"]), num(m["measured_ms"]),
                      num(m["factor"]))
        out.print(t)
    if doc["movement_usd"]:
        out.print(f"one-time cost of the move: ${doc['movement_usd']:.4g} (paid back within "
                  f"{doc['horizon_h']:g} h)")


def _where(p: dict, none: str) -> str:
    """An op's pool, or a split op's pools with their fractions (planner/split.py)."""
    from agentc.planner.split import fraction_text

    if not p:
        return none
    if p.get("split"):
        return " + ".join(f"{x['pool']} {fraction_text(x['fraction'])}" for x in p["split"])
    return p["pool"]


def _each(p: dict, key: str) -> str:
    """A figure of an op, per part for a split op ("8+3")."""
    if not p:
        return "-"
    return "+".join(str(x[key]) for x in p["split"]) if p.get("split") else str(p[key])
