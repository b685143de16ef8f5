"""The planning commands: `agentc plan`, `explain` and `cost`. They run the pipeline to
`placed` (or `costed`) and print rich tables on a terminal, or JSON with `--json`."""

from __future__ import annotations

import dataclasses
import json
import math

import click
from rich.table import Table

from agentc import promise
from agentc.cli._common import common_plan_options, guarded, make_options
from agentc.diagnostics import UsageError, VerifyError
from agentc.planner.instance import exceeds
from agentc.planner.queueing import LIGHT_LOAD_RPS
from agentc.planner.split import fraction_text
from agentc.report import console, num
from agentc.sim import DEFAULT_VERIFY_REQUESTS


def _compile(source, stop, **kw):
    from agentc import pipeline

    c = pipeline.compile_file(source, make_options(emit=stop, **kw), or_later=True)
    if stop == "placed":
        pipeline.placement(c)
    return c


REPAIR_HELP = ("With --verify, when the simulation misses: add capacity until it holds. Growing: the pools "
               "requests wait on gain one replica of their widest op at a time (at most 16 steps), then give "
               "back what the SLA does not need. Re-planning: the program is planned again for 1, 1.25 and "
               "1.5625 times the simulated load and each plan is grown. A load past the planned one is "
               "re-planned first, a miss at the planned load is grown first; at most 4 plans. Prints the ops "
               "that moved, devices and $/hr before and after, each SLA term simulated before and after, and "
               "the repaired plan with the planner's predictions at its grown replicas; deterministic for a "
               "--seed; when nothing holds, an error says by how much and what was tried. Needs a `load` "
               "clause.")


# how many requests each of --verify's replications simulates (sim/verify.py): a p99
# of one run of 2,000 rests on its 20 slowest, so --verify judges replications'
# interval, and more requests narrow it
REQUESTS_OPTION = click.option(
    "--requests", "verify_requests", default=DEFAULT_VERIFY_REQUESTS, show_default=True, type=click.IntRange(min=1),
    help="Requests in each replication --verify (and --repair) simulates (5 to 40 replications, until every "
         "term's 95% interval is on one side of its bound); more narrow the interval.")


def verify_options(repair_help: str):
    """--verify, --load, --seed, --requests and --repair (`plan` and `explain`)."""
    opts = (click.option("--verify", is_flag=True, help="Simulate the plan (agentc simulate) and fail when an "
                         "SLA term misses at its percentile."),
            click.option("--load", "verify_load", type=click.FloatRange(min=0, min_open=True), default=None,
                         help="Arrival rate for --verify in req/s (default: the program's load clause, else 1)."),
            click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                         help="Seed for --verify."),
            REQUESTS_OPTION,
            click.option("--repair", is_flag=True, help=repair_help))

    def add(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn
    return add


def check_verify_flags(verify: bool, repair: bool, load: float | None) -> None:
    """--repair, --load and --seed only mean something with --verify: say so rather
    than ignore them (`plan`, `explain`, `compile`)."""
    if verify:
        return
    ctx = click.get_current_context()

    def typed(param: str) -> bool:
        return ctx.get_parameter_source(param) == click.core.ParameterSource.COMMANDLINE

    for flag, given, why in (
            ("--repair", repair, ""),
            ("--load", load is not None, " (to plan for another load, change the program's `load` clause)"),
            ("--seed", typed("seed"), " (it seeds the simulation)"),
            ("--requests", typed("verify_requests"), " (it sizes the simulation)")):
        if given:
            raise UsageError(f"{flag} goes with --verify{why}")


def planner_at(c):
    """`load -> manifest` of `c`'s program planned for another load (what --repair
    re-plans with), or None for an input that cannot be re-planned (a .mlir module)."""
    if not str(c.input_path).endswith(".agent"):
        return None
    from agentc.targets import manifest

    def plan(load: float) -> dict:
        return json.loads(manifest.dumps(manifest.build(compile_at(c, load))))
    return plan


def predictor_at(c, own_view: dict | None = None):
    """`(load, view=None) -> {"e2e_ms", "ttft_ms", "tbt_ms"}`: what `c`'s plan (its
    placement: each op's option, pool, replicas and split, unchanged) does at `load`
    req/s as the simulator runs it (planner/replay.py at_load, planner/predict.py), on
    the devices the simulator gives it: the plan's under a load clause, else its pools'
    whole counts (a plan without one is priced per use on the shared fleet). `view`:
    the manifest of another plan of `c`'s program (what --repair settled on: planned
    for another load, replicas and devices grown), predicted instead: its placement
    read from its ops (not solved again: a solve under a time limit need not find the
    same plan twice). `own_view`: `c`'s own manifest where the caller has built it
    (else built here when first needed)."""
    import dataclasses

    from agentc.planner.replay import at_load
    from agentc.targets import manifest

    problem = c.placement.problem
    pools = {p.name: p for p in problem.pools}

    def placed_in(view: dict) -> dict:
        """op id -> (option rank, pool, replicas, split) of `view`'s ops: the option on
        its pool (by name or device class) at its tp and batch, nearest in busy time
        (a plan with a split op: its compile's placement, at the view's replicas)."""
        replicas = {o["id"]: int(o["replicas"]) for o in view["ops"]}
        if any(o.get("split") for o in view["ops"]):   # parts are named by the split menu: take the compile's
            rps = (view.get("sla") or {}).get("load_rps")
            cc = c if not rps or rps == problem.load_rps else compile_at(c, rps)
            options = {op.id: op.options for op in cc.placement.problem.ops}
            return {i: (options[i].index(p.option), p.pool, replicas.get(i, p.replicas), p.split_key)
                    for i, p in cc.placement.plan.ops.items()}
        out = {}
        for o in view["ops"]:
            op = next(x for x in problem.ops if x.id == o["id"])
            names = {o["pool"], pools[o["pool"]].device_class if o["pool"] in pools else o["pool"]}
            ranks = [k for k, x in enumerate(op.options)
                     if x.device in names and x.tp == int(o["tp"]) and x.batch == int(o.get("batch", 1))]
            rank = min(ranks, key=lambda k: abs(op.options[k].busy_ms - float(o["busy_ms"])))
            out[o["id"]] = (rank, o["pool"], replicas[o["id"]], "")
        return out

    def predict(load: float, view: dict | None = None) -> dict:
        if view is None:
            if not own:
                own.append(json.loads(manifest.dumps(manifest.build(c))))
            return promise.prediction(c, load, own[0])
        chosen = placed_in(view)
        loaded = bool((view.get("sla") or {}).get("load_rps"))
        devices = dict(view["totals"].get("devices") or {}) if loaded else {p.name: p.count for p in problem.pools}
        m = at_load(dataclasses.replace(problem, load_rps=float(load)), chosen, devices, promise.batches(view),
                    replica_engines=loaded)
        return {"e2e_ms": m.e2e_ms, "ttft_ms": m.ttft_ms, "tbt_ms": m.tbt_ms}

    own = [] if own_view is None else [json.loads(manifest.dumps(own_view))]
    return predict


def compile_at(c, load: float, emit: str | None = "placed"):
    """`c`'s program compiled again with its load clause replaced by `load` req/s, up to
    `emit` (None: all stages); the same options otherwise."""
    import dataclasses

    from mlir import ir

    from agentc import pipeline
    from agentc.passes._plan_ctx import entry_graph

    full = emit is None   # a whole compile keeps its dumps; a plan for --repair's search does not
    c2 = pipeline.compile_file(c.input_path, dataclasses.replace(
        c.options, emit="costed", dump_phases_to=c.options.dump_phases_to if full else None,
        print_ir_after_all=c.options.print_ir_after_all and full))
    with c2.ctx, ir.Location.unknown():
        entry_graph(c2.module).attributes["load_rps"] = ir.FloatAttr.get(ir.F64Type.get(), float(load))
    c2.options.emit = emit
    pipeline.resume(c2)
    if emit == "placed":
        pipeline.placement(c2)
    return c2


def run_repair(c, view, load, seed, requests: int = DEFAULT_VERIFY_REQUESTS):
    """verify.repair on `view` with the cluster's prices and `c`'s re-planner."""
    from agentc.passes.place import pool_price
    from agentc.sim import verify

    cluster = c.pass_ctx.cluster
    return verify.repair(view, {p.name: pool_price(p.device, cluster) for p in cluster.pools}, load, requests, seed=seed,
                         replan=planner_at(c), host_pools=frozenset(p.name for p in cluster.pools if p.device.is_cpu))


def repaired(c, view, load, seed, emit: str | None = "placed", requests: int = DEFAULT_VERIFY_REQUESTS):
    """--repair for `plan`, `explain` and `compile`: verify.repair on `c`'s plan `view`,
    then the compile of the plan it settles on, so that everything printed or written
    is about the plan the simulation held: `c` compiled again (up to `emit`) for the
    re-planned load when it re-planned; its plan re-evaluated by the planner at the
    grown replica counts (grown_plan); its manifest with the repair's devices and $/hr
    and the repair's report (`repair`, verify.report). Returns (compile, manifest,
    Repair), the Repair's `planned_ms` those of the grown plan; when the repair holds
    nothing, the given compile and what the repair reached (verify.check raises)."""
    from agentc.sim import verify
    from agentc.targets import manifest

    fixed_view, fixed = run_repair(c, view, load, seed, requests)
    if fixed.verdict.misses:
        return c, fixed_view, fixed
    if fixed.replanned_rps is not None:
        c = compile_at(c, fixed.replanned_rps, emit=emit)
    grown_plan(c, fixed, fixed_view["totals"])
    c.artifacts.pop("manifest.json", None)   # built again below: its totals and report change
    view = manifest.build(c)
    view["totals"] = fixed_view["totals"] | {k: view["totals"][k] for k in ("e2e_ms", "ttft_ms", "tbt_ms")}
    fixed = dataclasses.replace(fixed, verdict=verify.predicted(fixed.verdict, view))
    view["repair"] = verify.report(fixed)
    if emit is None or emit == "manifest":
        c.artifacts["manifest.json"] = manifest.dumps(view)
    return c, view, fixed


def grown_plan(c, fixed, totals: dict) -> None:
    """Put into `c` the plan a repair grew: its ops at the replica counts the growth gave
    them (Repair.replicas), every prediction (latency, TTFT and TBT at their statistics,
    each op's wait, start and slack) evaluated again by the planner's own evaluator
    (planner.replay) for those counts; devices and $ those the simulation held
    (`totals`), and the baselines' ratios against that cost. The solver's status stays
    (it describes the placement); the grown replicas are recorded on the IR's ops."""
    from mlir import ir

    from agentc import planner
    from agentc.passes._ir import get, walk

    placed = c.placement
    plan, problem = placed.plan, placed.problem
    if fixed.replicas:
        options = {op.id: op.options for op in problem.ops}
        chosen = {i: (options[i].index(p.option), p.pool, fixed.replicas.get(i, (0, p.replicas))[1], p.split_key)
                  for i, p in plan.ops.items()}
        new = planner.replay(problem, chosen, plan.status, plan.gap, baselines=False, exact=True)
        with c.ctx:   # the module as it is now (a later stage may have rebuilt the placed ops)
            for op in walk(c.module.operation):
                if "replicas" in op.attributes and get(op, "op_id") in fixed.replicas:
                    op.attributes["replicas"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64),
                                                                   fixed.replicas[get(op, "op_id")][1])
        new.solve_time_s, new.baselines = plan.solve_time_s, plan.baselines
        plan = new
    usd_hr = totals.get("usd_per_hr")
    if usd_hr is not None:
        plan.usd_per_hr, plan.usd_per_request, plan.cost = usd_hr, totals["usd_per_request"], usd_hr
        p = problem
        plan.tokens_per_usd = (p.tokens_per_request / plan.usd_per_request
                               if p.tokens_per_request and plan.usd_per_request > 0 else None)
        plan.baselines = [dataclasses.replace(b, ratio=plan.cost / b.cost if b.feasible and b.cost else b.ratio)
                          for b in plan.baselines]
    plan.devices = dict(totals.get("devices") or plan.devices)
    c.pass_ctx.placement = dataclasses.replace(placed, plan=plan, predictions={})   # grown: predicted anew


def grown_note(fixed) -> str | None:
    """One line saying that (and how) the plan printed was grown by simulation, or None."""
    if not fixed.added and not fixed.replicas and fixed.replanned_rps is None:
        return None
    parts = []
    if fixed.replanned_rps is not None:
        parts.append(f"re-planned for {fixed.replanned_rps:g} req/s")
    parts += [f"{k} {fixed.before.get(k, 0)} -> {fixed.before.get(k, 0) + n} devices" for k, n in fixed.added.items()]
    parts += [f"{op} {a} -> {b} replicas" for op, (a, b) in fixed.replicas.items()]
    grown = fixed.replicas or (fixed.added and fixed.replanned_rps is None)
    return (f"plan {'grown by simulation' if grown else 're-planned'} (--repair): " + ", ".join(parts)
            + "; its predictions are the planner's for this plan" + (" at these replica counts" if grown else ""))


def print_repair(fixed) -> None:
    """What --repair did: the ops a re-plan moved, devices per pool and $/hr before and
    after, and each SLA term simulated before and after (verify.report's fields)."""
    from agentc.sim import verify

    doc = verify.report(fixed)
    out = console()
    if fixed.replanned_rps is not None:
        t = Table("op", "pool, tp x replicas, batch before", "after",
                  title=f"repair: re-planned for {fixed.replanned_rps:g} req/s; ops that changed")
        for mv in fixed.moved:
            t.add_row(mv["op"], *("-" if x is None else f"{x['pool']}, {x['tp']} x {x['replicas']}, {x['batch']}"
                                  for x in (mv["before"], mv["after"])))
        out.print(t)
    if fixed.added:
        t = Table("pool", "devices planned", "devices after repair", "added $/hr",
                  title=f"repair: {fixed.steps} simulation(s)")
        for pool, n in fixed.added.items():
            t.add_row(pool, str(fixed.before.get(pool, 0)), str(fixed.before.get(pool, 0) + n),
                      num(fixed.usd_per_hr[pool]))
        out.print(t)
    elif fixed.replanned_rps is None:
        out.print("repair: nothing added (the plan holds, or no pool that requests wait on can grow)")
    if fixed.usd_per_hr_before is not None:
        out.print(f"repair: {num(fixed.usd_per_hr_before)} $/hr before, {num(fixed.usd_per_hr_after)} $/hr after")
    t = Table("SLA term", "bound ms", "simulated before", "met by", "simulated after", "met by",
              title=f"repair: each term before and after, replications of {doc['requests']} requests at "
                    f"{doc['load_rps']:g} req/s")
    for row in doc["terms"]:
        b, a = row["before"], row["after"]
        t.add_row(row["term"], num(row["bound_ms"]), *(("-", "-") if b is None else
                                                        (num(b["simulated_ms"]), f"{100 * b['attained']:.2f}%")),
                  num(a["simulated_ms"]), f"{100 * a['attained']:.2f}%")
    out.print(t)


def _plan_view(c) -> dict:
    from agentc.targets import manifest

    return manifest.build(c)


@click.command("plan")
@click.argument("source", type=click.Path(dir_okay=False), required=False)
@common_plan_options
@click.option("--pareto", is_flag=True, help="Sweep the latency SLA and print the cost-latency frontier.")
@click.option("--sweep", type=click.Choice(["prefill-decode-pairs"]), default=None,
              help="The paper's TCO study: every prefill::decode accelerator pair, Llama 3 8B/70B, FP16/FP8, "
                   "ISL/OSL 512/4096 and 4096/512, interactive and offline; benefit vs H100::H100. "
                   "Example: agentc plan --sweep prefill-decode-pairs")
@click.option("--points", default=8, show_default=True, type=click.IntRange(min=2),
              help="Frontier points for --pareto (at least 2).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "mermaid", "dot", "svg"]), default="table",
              show_default=True, help="Output format. Example: --format mermaid")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="Write to a file, not stdout.")
@verify_options(REPAIR_HELP)
@guarded
def plan_cmd(source, cluster, catalogs, objective, sla_mode, lam, pricing, worst_case, time_limit_s, pareto, sweep, points, fmt,
             as_json, output, verify, verify_load, seed, verify_requests, repair):
    """Place SOURCE on the cluster and print the plan (or its frontier or a picture).

    \b
    Examples:
      agentc plan examples/voice_agent.agent
      agentc plan examples/rag_agent.agent --pareto --json
      agentc plan examples/voice_agent.agent --format dot -o plan.dot
      agentc plan --sweep prefill-decode-pairs --pricing given
    """
    fmt = "json" if as_json else fmt
    check_verify_flags(verify, repair, verify_load)
    if verify and (sweep or pareto or fmt not in ("table", "json") or output):
        raise UsageError("--verify prints the plan's simulation as a table or JSON on stdout: not with --sweep, "
                         "--pareto, --format mermaid/dot/svg or -o")
    if sweep:
        if source is not None or pareto:
            raise UsageError("--sweep plans the paper's fixed scenarios: it takes no SOURCE and no --pareto")
        return _tco_sweep(cluster, catalogs, pricing, fmt, output)
    if output and fmt == "table":
        raise UsageError("-o needs --json or --format with a text format (mermaid, dot, svg)")
    if source is None:
        raise UsageError("plan needs a SOURCE file (or --sweep prefill-decode-pairs)")
    c = _compile(source, "placed", cluster=cluster, catalogs=tuple(catalogs), objective=objective,
                 sla_mode=sla_mode, lam=lam, pricing=pricing, worst_case=worst_case,
                 time_limit_s=time_limit_s)
    if pareto:
        from agentc import planner

        pts = planner.pareto(c.problem, points=points)
        if fmt == "json":
            text = json.dumps([{"e2e_ms": round(l, 6), "cost": round(cst, 9)} for l, cst in pts], indent=2)
        elif fmt == "svg":
            from agentc import pictures

            text = pictures.pareto_svg(pts)
        elif fmt == "table":
            t = Table("e2e latency (ms)", "cost", title="cost-latency frontier")
            for l, cst in pts:
                t.add_row(num(l), num(cst))
            return _emit_table(t, output)
        else:
            raise UsageError("--pareto prints as table, json or svg")
        return _emit_text(text, output)
    view = _plan_view(c)
    if verify:
        return _verify(c, view, verify_load, seed, as_json or fmt == "json", repair, verify_requests)
    if fmt == "json":
        return _emit_text(json.dumps(view, indent=2, sort_keys=True), output)
    if fmt in ("mermaid", "dot", "svg"):
        from agentc import pictures

        if fmt == "mermaid":
            return _emit_text(pictures.to_mermaid(view), output)
        dot = pictures.to_dot(view)
        if fmt == "dot":
            return _emit_text(dot, output)
        svg = pictures.to_svg(dot)
        return _emit_text(svg.decode() if isinstance(svg, bytes) else svg, output)
    _print_plan(view)
    line = prediction_line(c, view)
    if line:
        console().print(line)


def term_names(view: dict) -> dict[str, str]:
    """The SLA terms as the program writes them, with their statistic (`latency.p99`,
    `ttft`): the manifest's `sla.stats` per term, `all` printed bare."""
    st = (view.get("sla") or {}).get("stats") or {}
    return {t: t2 + ("" if st.get(t, "all") == "all" else "." + st[t])
            for t, t2 in (("e2e", "latency"), ("ttft", "ttft"), ("tbt", "tbt"))}


def prediction_line(c, view: dict) -> str | None:
    """The plan's prediction at the rate its latency terms are stated for, as the
    simulator runs it (planner/predict.py), beside the sizing figures above: the sizing
    model is what bought the capacity and leaves out prefill batching and the host
    queue, so a term can be predicted above its planned figure, or over its bound
    (then said, with what to run). None where the placement cannot be predicted."""
    sla = view.get("sla") or {}
    rps = sla.get("latency_rps")
    if not rps:
        return None
    try:
        pred = predictor_at(c, view)(float(rps))
    except VerifyError:
        return None
    names = term_names(view)
    parts, over = [], []
    for term, key in (("e2e", "e2e_ms"), ("ttft", "ttft_ms"), ("tbt", "tbt_ms")):
        name = names[term]
        value, bound = pred[key], sla.get(key)
        parts.append(f"{name} {'unbounded' if value == math.inf else num(value) + ' ms'}")
        if bound is not None and value is not None and exceeds(value, bound):   # (None: no such term, e.g. no LLM call)
            over.append(name)
    text = f"predicted at {rps:g} req/s as the simulator runs the plan: " + ", ".join(parts)
    if sla.get("excluded_plans"):   # agentc/promise.py excluded them
        text += f"; {sla['excluded_plans']} plan(s) the MILP preferred were predicted to miss the SLA and excluded"
    sized = sla.get("sized_ms") or {}
    if sized:   # agentc/promise.py lowered the sizing bounds until the prediction held the program's
        text += ("; sized to " + ", ".join(f"{names[k[:-3]]} < {num(v)} ms" for k, v in sorted(sized.items()))
                 + " (the figures above and the baselines' SLA) so that the prediction holds the program's bound")
    if over:
        text += (f"; over the bound: {', '.join(over)} (check with --verify, add capacity with "
                 "--verify --repair)")
    return text


def _print_plan(view: dict, note: str | None = None) -> None:
    """The plan table and its totals (`note`: a line before them, e.g. grown_note)."""
    # batch: sequences one execution serves (decode's chosen batch); queue ms: the
    # planner's M/G/c wait at the SLA's percentile, already inside latency ms
    t = Table("op", "kind", "pool", "tp", "replicas", "batch", "queue ms", "latency ms", "$/call", "slack ms",
              "source", title=f"plan for agent '{view['agent']}' ({view['objective']})")
    for op in view["ops"]:
        parts = op.get("split") or [op]  # a split op: its pools with their fractions
        pool = " + ".join(f"{s['pool']} {fraction_text(s['fraction'])}" for s in parts) if "split" in op else op["pool"]
        t.add_row(op["id"], op["kind"], pool, "+".join(str(s["tp"]) for s in parts),
                  "+".join(str(s["replicas"]) for s in parts), str(op.get("batch", 1)),
                  num(op.get("queue_wait_ms", 0.0)), num(op["est_latency_ms"]), num(op["usd_per_call"]),
                  num(op["slack_ms"]), op["loc"])
    out = console()
    if note:
        out.print(note)
    out.print(t)
    tot = view["totals"]
    name = term_names(view)
    out.print(f"{name['e2e']} {num(tot['e2e_ms'])} ms, {name['ttft']} {num(tot['ttft_ms'])} ms, "
              f"{name['tbt']} {num(tot['tbt_ms'])} ms, "
              f"{num(tot['usd_per_hr'])} $/hr, {num(tot['usd_per_1m_requests'])} $ per 1M requests, "
              f"devices {tot['devices']}")
    out.print(f"solver: {view['solver']['status']}")
    for b in view["baselines"]:
        state = f"ratio {num(b['ratio'])}" if b["feasible"] else f"infeasible: {b['reason']}"
        if b["feasible"] and b.get("status") == "feasible":   # its time ran out: the ratio may rise
            state += f"; not proven optimal: feasible (gap {100 * b['gap']:.3g}%)"
        out.print(f"baseline {b['name']}: cost {num(b['cost'])} ({state})")


def _verify(c, view, load, seed, as_json, repair=False, requests: int = DEFAULT_VERIFY_REQUESTS):
    """Simulate the plan; print per SLA term the plan's figure (the sizing model's),
    its prediction at the load simulated (planner/predict.py) and the simulated value;
    a miss is an error.
    With `repair`, first add capacity until the simulation holds (`repaired`) and print
    what was done and the grown plan, its predictions evaluated again at its replicas;
    the JSON then has the report (`repair`) and that plan's manifest (`plan`)."""
    from agentc.passes._ir import source_loc
    from agentc.passes._plan_ctx import entry_graph
    from agentc.sim import verify

    fixed = None
    if repair:
        c, view, fixed = repaired(c, view, load, seed, requests=requests)
        verdict = fixed.verdict
    else:
        verdict = verify.verify(view, load, requests, seed=seed)
    # beside the plan's sizing figures (planned_ms), what the plan does at this load as
    # the simulator runs it (planner/predict.py); a placement this load's menu cannot
    # price (a split recorded at a load where one pool carries the op) has none, and
    # the simulation is still the verdict
    try:
        prediction = predictor_at(c, None if fixed is not None else view)(verdict.load_rps,
                                                                          view if fixed is not None else None)
    except VerifyError:
        prediction = {"e2e_ms": None, "ttft_ms": None, "tbt_ms": None}
    verdict = verify.with_prediction(verdict, prediction)
    unbounded = {t for t, k in (("latency", "e2e_ms"), ("ttft", "ttft_ms"), ("tbt", "tbt_ms"))
                 if prediction[k] == math.inf}
    if as_json:
        doc = {"load_rps": verdict.load_rps, "requests": verdict.requests, "replications": verdict.replications,
               "terms": verdict.terms, "holds": not verdict.misses}
        if fixed is not None:
            doc["repair"] = verify.report(fixed)
            if not verdict.misses:
                doc["plan"] = view
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        if fixed is not None:
            print_repair(fixed)
            if not verdict.misses:
                _print_plan(view, grown_note(fixed))
        t = Table("SLA term", "bound ms", "planned ms", "predicted ms", "simulated ms", "95% interval ms", "met by",
                  "holds", title=f"plan verified by simulation: {verdict.replications} replications of "
                                 f"{verdict.requests} requests at {verdict.load_rps:g} req/s")
        from agentc.sim import report

        for row in verdict.terms:
            lo, hi = row["observed_ci_ms"]
            t.add_row(f"{row['term']} ({report.judged_at(row)})", num(row["bound_ms"]), num(row["planned_ms"]),
                      "unbounded" if row["term"].split(".")[0] in unbounded else num(row["predicted_ms"]),
                      num(row["observed_ms"]), "-" if None in (lo, hi) else f"{num(lo)}-{num(hi)}",
                      f"{100 * row['attained']:.2f}%",
                      "yes" if row["holds"] else "no" if row["decided"] else "undecided")
        console().print(t)
    verify.check(verdict, source_loc(entry_graph(c.module)), fixed)


def _tco_sweep(cluster, catalogs, pricing, fmt, output):
    import dataclasses

    from agentc import tco_study
    from agentc.catalog import load_catalog, load_cluster

    if fmt not in ("table", "json"):
        raise UsageError(f"--sweep prints a table or JSON, not --format {fmt}")
    if output and fmt != "json":
        raise UsageError("-o with --sweep needs --json")
    cat = load_catalog(catalogs)
    cl = load_cluster(cluster, cat)
    if pricing:
        cl = dataclasses.replace(cl, pricing=pricing)
    result = tco_study.sweep(cat, cl)
    findings = tco_study.paper_findings(result)
    if fmt == "json":
        data = {sc: [{"prefill": p, "decode": d, "benefit": None if b is None else round(b, 6),
                      "prefill_tp": pre and pre.tp, "prefill_batch": pre and pre.batch,
                      "decode_tp": dec and dec.tp, "decode_batch": dec and dec.batch}
                     for (p, d), (b, pre, dec) in sorted(row.items())]
                for sc, row in result.items()}
        return _emit_text(json.dumps({"pricing": cl.pricing, "baseline": "H100::H100", "scenarios": data,
                                      "paper_findings": findings}, indent=2, sort_keys=True), output)
    devices = tco_study.ACCELERATORS
    out = console()
    out.print(f"TCO benefit vs H100::H100 (pricing: {cl.pricing}); rows prefill, columns decode; "
              f"'-' = cannot meet the SLA")
    for sc, row in result.items():
        t = Table("P \\ D", *devices, title=sc)
        best = max((b for b, _p, _d in row.values() if b is not None), default=None)
        for p in devices:
            cells = []
            for d in devices:
                b = row[(p, d)][0]
                cells.append("-" if b is None else (f"[bold]{b:.2f}*[/bold]" if b == best else f"{b:.2f}"))
            t.add_row(p, *cells)
        out.print(t)
    n = len(findings)
    held = {k: sum(f[k] for f in findings.values()) for k in ("best", "beats_b200", "h100_gaudi3")}
    out.print(f"The paper's orderings among its six pairs (prefill H100|B200, decode H100|B200|Gaudi3), "
              f"pricing {cl.pricing}:\n"
              f"  B200::Gaudi3 best of the six: {held['best']}/{n} scenarios\n"
              f"  B200::Gaudi3 beats B200::B200: {held['beats_b200']}/{n}\n"
              f"  H100::Gaudi3 within 5% of or above B200::B200: {held['h100_gaudi3']}/{n}\n"
              f"  (docs/tco_study.md compares the pricing rules)")


def _emit_text(text, output):
    if output:
        from agentc.outputs import write_file_atomic

        write_file_atomic(output, (text if text.endswith("\n") else text + "\n").encode())
    else:
        click.echo(text)


def _emit_table(table, output):
    if output:
        raise UsageError("-o needs --json or --format with a text format")
    console().print(table)


@click.command("explain")
@click.argument("source", type=click.Path(dir_okay=False))
@common_plan_options
@click.option("--op", "op_name", default=None, help="Explain one op (its id, e.g. ans.decode).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@verify_options(REPAIR_HELP + " Explains the repaired plan.")
@guarded
def explain_cmd(source, cluster, catalogs, objective, sla_mode, lam, pricing, worst_case, time_limit_s, op_name,
                as_json, verify, verify_load, seed, verify_requests, repair):
    """Say why each op went where: chosen device, time and cost, the runner-up and the
    delta, slack on the critical path, and the constraints that bind.

    \b
    Examples:
      agentc explain examples/voice_agent.agent
      agentc explain examples/voice_agent.agent --op ans.decode
      agentc explain examples/rag_agent.agent --verify --repair
    """
    check_verify_flags(verify, repair, verify_load)
    c = _compile(source, "placed", cluster=cluster, catalogs=tuple(catalogs), objective=objective,
                 sla_mode=sla_mode, lam=lam, pricing=pricing, worst_case=worst_case,
                 time_limit_s=time_limit_s)
    fixed = _held(c, verify_load, seed, repair, verify_requests) if verify else None
    if fixed is not None:
        c = fixed[0]
    plan = c.plan
    ids = sorted(plan.ops)
    if op_name is not None:
        if op_name not in plan.ops:
            raise UsageError(f"no op '{op_name}' in the plan; ops: {', '.join(ids)}")
        ids = [op_name]
    rows = []
    for op_id in ids:
        p = plan.ops[op_id]
        ru = p.runner_up
        rows.append({
            # a decode's time at the batch its traffic fills (planner/queueing.py), and those batches
            "op": op_id, "pool": p.pool, "tp": p.option.tp,
            "time_ms": p.option.time_ms if p.time_ms is None else p.time_ms,
            "batch": p.option.batch, "run_batch": p.run_batch,
            "usd_per_call": p.option.usd_per_call, "binding_resource": p.option.note,
            "slack_ms": p.slack_ms, "on_critical_path": op_id in plan.critical_path,
            "replicas": p.replicas, "queue_wait_ms": p.wait_ms,
            "runner_up": None if ru is None else {
                "pool": ru.pool, "tp": ru.option.tp, "delta_ms": ru.delta_ms, "delta_cost": ru.delta_cost,
                "feasible": ru.feasible, "why_not": list(ru.reasons)},
            "excluded": [{"pool": o.device, "tp": o.tp, "reason": r} for o, r in p.excluded],
            # a split op (planner/split.py): per pool its fraction of the executions; the
            # fields above are then the largest part's and time_ms the slowest part's
            "split": [{"pool": s.pool, "fraction": s.fraction, "tp": s.option.tp, "replicas": s.replicas,
                       "devices": s.devices, "time_ms": s.option.time_ms, "queue_wait_ms": s.wait_ms}
                      for s in p.split],
        })
    result = {"ops": rows, "binding": list(plan.binding), "critical_path": list(plan.critical_path),
              "e2e_ms": plan.e2e_ms, "ttft_ms": plan.ttft_ms, "tbt_ms": plan.tbt_ms, "stats": plan.stats,
              "scenarios": plan.scenarios, "scenarios_exact": plan.scenarios_exact,
              "cost": plan.cost, "objective": plan.objective, "status": plan.status, "gap": plan.gap,
              # latency terms hold at this arrival rate: the load clause, else the light rate
              "latency_rps": c.problem.load_rps or LIGHT_LOAD_RPS,
              # bounds solved to below the program's so that the prediction holds it (agentc/promise.py)
              "sized_ms": {t: b for t, (b, _) in promise.sized_bounds(c).items()},
              # plans the MILP preferred, excluded as their prediction misses the SLA
              "excluded_plans": promise.excluded_count(c)}
    note = None
    if fixed is not None and fixed[1] is not None:
        from agentc.sim import verify as sim_verify

        result["repair"] = sim_verify.report(fixed[1])
        note = grown_note(fixed[1])
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    out = console()
    if note:
        out.print(note)
    for r in rows:
        ru = r["runner_up"]
        sized = (f", {r['replicas']} replica(s) + {num(r['queue_wait_ms'])} ms queueing"
                 if r["queue_wait_ms"] > 0 or r["replicas"] > 1 else "")
        fills = "" if r["run_batch"] is None else f" at batch {num(r['run_batch'])} of {r['batch']}"
        line = (f"{r['op']}: {r['pool']} tp={r['tp']}, {num(r['time_ms'])} ms{fills} ({r['binding_resource']}-bound)"
                f"{sized}, ${num(r['usd_per_call'])}/call, slack {num(r['slack_ms'])} ms"
                + (" [critical path]" if r["on_critical_path"] else ""))
        out.print(line)
        for part in r["split"]:
            out.print(f"    split: {fraction_text(part['fraction'])} of its calls on {part['pool']} tp={part['tp']}, "
                      f"{part['replicas']} replica(s), {num(part['time_ms'])} ms + {num(part['queue_wait_ms'])} ms "
                      f"queueing")
        if ru:
            why = f"; not chosen: {'; '.join(ru['why_not'])}" if ru["why_not"] else ""
            out.print(f"    runner-up {ru['pool']} tp={ru['tp']}: {ru['delta_ms']:+.4g} ms, "
                      f"{ru['delta_cost']:+.4g} cost{why}")
        for ex in r["excluded"][:3]:
            out.print(f"    excluded {ex['pool']} tp={ex['tp']}: {ex['reason']}")
    out.print("binding constraints: " + ("; ".join(plan.binding) if plan.binding else "none"))
    out.print(plan_statistics(plan))
    load = c.problem.load_rps
    out.print(f"latency terms at {num(result['latency_rps'])} req/s"
              + (" (the load clause)" if load else " (no load clause: the program's own requests at the light "
                 "rate on free pools, decode at the batch they fill; cost per request at the priced batch)"))
    for term, (b, given) in promise.sized_bounds(c).items():
        out.print(f"{term} sized to {num(b)} ms, below the program's {num(given)} ms, so that the plan's prediction "
                  f"holds it (the SLA named above is the sized bound)")
    if result["excluded_plans"]:
        out.print(f"{result['excluded_plans']} plan(s) the MILP preferred were excluded, their prediction missing "
                  "the SLA at the load: this is the cheapest plan left")
    out.print(f"solver: {plan.status}")


def _held(c, load, seed, repair, requests: int = DEFAULT_VERIFY_REQUESTS):
    """`explain --verify [--repair]`: the plan held to its SLA by simulation (a miss is
    the error `plan --verify` gives); with `repair`, the compile of the repaired plan.
    Returns (compile, Repair or None)."""
    from agentc.passes._ir import source_loc
    from agentc.passes._plan_ctx import entry_graph
    from agentc.sim import verify

    loc = source_loc(entry_graph(c.module))
    view = _plan_view(c)
    if not repair:
        verify.check(verify.verify(view, load, requests, seed=seed), loc)
        return c, None
    c2, _view, fixed = repaired(c, view, load, seed, requests=requests)
    verify.check(fixed.verdict, loc, fixed)
    return c2, fixed


def plan_statistics(plan) -> str:
    """The SLA statistics the plan is judged at, over how many control-flow scenarios."""
    parts = []
    for term, label, value in (("e2e", "latency", plan.e2e_ms), ("ttft", "ttft", plan.ttft_ms),
                               ("tbt", "tbt", plan.tbt_ms)):
        stat = plan.stats.get(term, "all")
        if value is not None:
            parts.append(f"{label}{'' if stat == 'all' else '.' + stat} {num(value)} ms"
                         + (" (every path)" if stat == "all" else ""))
    how = "exact" if plan.scenarios_exact else "merged into a sound upper bound"
    return f"statistics: {', '.join(parts)} over {plan.scenarios} control-flow scenario(s), {how}"


@click.command("cost")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--cluster", default=None, type=click.Path(dir_okay=False), help="Cluster inventory TOML.")
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(dir_okay=False), help="Extra catalog TOML.")
@click.option("--pricing", type=click.Choice(["tco", "capex", "given"]), default=None, help="Device pricing rule.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def cost_cmd(source, cluster, catalogs, pricing, as_json):
    """Print every op's cost on every pool: time, binding resource, memory fit, $/call
    (the best tensor-parallel degree per pool), so you see why an op is expensive where.

    \b
    Examples:
      agentc cost examples/voice_agent.agent
      agentc cost examples/rag_agent.agent --cluster examples/clusters/table3.toml --json
    """
    from agentc.costmodel import KINDS
    from agentc.passes._ir import get, walk
    from agentc.passes._plan_ctx import entry_graph

    c = _compile(source, "costed", cluster=cluster, catalogs=tuple(catalogs), pricing=pricing)
    graph = entry_graph(c.module)
    rows = []
    for op in walk(graph):
        if op.name not in KINDS or "costs" not in op.attributes:
            continue
        best: dict[str, dict] = {}
        for e in get(op, "costs"):
            cur = best.get(e["pool"])
            if cur is None or (e["fits"], -e["time_ms"]) > (cur["fits"], -cur["time_ms"]):
                best[e["pool"]] = e
        rows.append({"op": get(op, "label", op.name), "kind": op.name, "per_pool": best})
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    pools = sorted({p for r in rows for p in r["per_pool"]})
    t = Table("op", "kind", *pools, title="time ms / binding / $ per call (best tp per pool; ! = does not fit)")
    for r in rows:
        cells = []
        for p in pools:
            e = r["per_pool"].get(p)
            cells.append("-" if e is None else
                         f"{num(e['time_ms'])} {e['binding'][:3]}{'' if e['fits'] else '!'} ${num(e['usd_per_call'], 2)}"
                         + (f" tp{e['tp']}" if e["tp"] > 1 else ""))
        t.add_row(r["op"], r["kind"], *cells)
    console().print(t)
