"""Identical pools are priced and placed once (Cluster.without_twins, Instance._merge_twins),
and the MILP sees only choices that can be in an optimal plan (Instance.useful)."""

from __future__ import annotations

import re
import subprocess
import sys

from agentc.planner import SLA, Option, PlanEdge, PlanOp, Pool, Problem, solve
from agentc.planner.instance import Instance

PROGRAM = """model m = llama3-8b
agent main(q: text) -> text {
  a = tool t0(q, latency=5ms, payload=1KB)
  b = tool t1(a, latency=5ms, payload=1KB)
  return llm(m, b, in=64, out=16)
}
"""


def cluster(pools: int, load_named: bool = False) -> str:
    lines = ['name = "twins"', ""]
    for i in range(pools):
        lines += ["[[pool]]", f'name = "cpu{i:03d}"', 'device = "epyc-9654"', "count = 8", ""]
    lines += ["[[pool]]", 'name = "gpu"', 'device = "H100"', "count = 8", ""]
    if load_named:  # a link names cpu007: it is no twin of the others any more
        lines += ["[[link]]", 'a = "cpu007"', 'b = "gpu"', "gbps = 400", "latency_ms = 0.001", ""]
    lines += ["[default_link]", "gbps = 100", "latency_ms = 0.05", ""]
    return "\n".join(lines)


def compile_costed(tmp_path, pools: int, named: bool = False) -> str:
    src = tmp_path / "p.agent"
    src.write_text(PROGRAM)
    cl = tmp_path / f"c{pools}{named}.toml"
    cl.write_text(cluster(pools, named))
    out = tmp_path / f"o{pools}{named}.mlir"
    proc = subprocess.run([sys.executable, "-m", "agentc", "compile", str(src), "--cluster", str(cl),
                           "--emit", "placed", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


def test_identical_pools_are_priced_once_and_the_plan_is_the_one_pool_plan(tmp_path):
    many = compile_costed(tmp_path, 300)
    one = compile_costed(tmp_path, 1)
    priced = set(re.findall(r'\{pool = "(cpu\d+)"', many)) | set(re.findall(r'pool = "(cpu\d+)", tp', many))
    assert set(re.findall(r'"(cpu\d+)"', many)) == {"cpu000"}  # no twin is priced or placed
    assert priced <= {"cpu000"}
    cost = re.compile(r"plan_cost = ([0-9.eE+-]+)")
    assert cost.search(many).group(1) == cost.search(one).group(1)


def test_a_pool_a_link_names_is_kept(tmp_path):
    ir = compile_costed(tmp_path, 20, named=True)
    assert set(re.findall(r'"(cpu\d+)"', ir)) == {"cpu000", "cpu007"}


def test_without_twins_keeps_one_per_op_under_load():
    from agentc.catalog import load_catalog
    from agentc.catalog.clusters import load_cluster

    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.toml")
        with open(path, "w") as f:
            f.write(cluster(10, load_named=True))
        cl = load_cluster(path, load_catalog())
    kept, dropped = cl.without_twins(3)
    assert [p.name for p in kept] == ["cpu000", "cpu001", "cpu002", "cpu007", "gpu"]
    assert dropped == {"cpu002": ("cpu003", "cpu004", "cpu005", "cpu006", "cpu008", "cpu009")}
    kept, dropped = cl.without_twins(1)
    assert [p.name for p in kept] == ["cpu000", "cpu007", "gpu"]


def test_dominated_and_too_slow_choices_leave_the_milp():
    # on pool P: fast (10 ms, $3), slow (20 ms, $2), worse (20 ms, $4: beaten by fast on
    # both counts); on Q: 70 ms breaks the 75 ms bound with b's fastest 50 ms after it
    a = PlanOp("a", "compute", [Option("P", 1, 10.0, 3e-6, 10.0), Option("P", 1, 20.0, 2e-6, 20.0),
                                Option("P", 1, 20.0, 4e-6, 20.0), Option("Q", 1, 70.0, 1e-6, 70.0)])
    b = PlanOp("b", "compute", [Option("P", 1, 50.0, 1e-6, 50.0)])
    p = Problem([a, b], [PlanEdge("a", "b", 0.0)], [Pool("P", "P", 4, 1.0), Pool("Q", "Q", 4, 1.0)], [],
                SLA(75.0))
    inst = Instance(p)
    kept = sorted(inst.choices[k].rank for k in inst.useful[0])
    assert kept == [0, 1]
    plan = solve(p, baselines=False, explain=False)
    assert plan.ops["a"].option.time_ms == 20.0 and plan.cost == 3e-6 and plan.status == "optimal"


def test_mend_reaches_a_plan_from_a_rounding_that_breaks_the_deadline_and_a_pool():
    """heuristics.mend, the large-graph fallback when the sub-MILPs find no plan: from
    every op on the fast pool (3 devices needed, 2 there) it reaches a plan within
    the deadline and the pools, checked here by hand."""
    import time as _time

    from agentc.planner.heuristics import mend

    ops = [PlanOp(f"o{i}", "compute", [Option("F", 1, 10.0, 0.0, 10.0), Option("S", 1, 30.0, 0.0, 30.0)])
           for i in range(3)]
    edges = [PlanEdge("o0", "o1", 0.0), PlanEdge("o1", "o2", 0.0)]
    p = Problem(ops, edges, [Pool("F", "F", 2, 4.0), Pool("S", "S", 10, 1.0)], [], SLA(75.0), load_rps=1.0,
                service_cv=0.0)
    inst = Instance(p)
    on = {name: [next(k for k in inst.op_choices[i] if inst.sites[inst.choices[k].site].name == name
                      and inst.choices[k].replicas == 1) for i in range(3)] for name in "FS"}
    start = inst.evaluate(on["F"])
    assert start.pool_over  # 3 replicas on a pool of 2
    m = mend(inst, on["F"], None, _time.perf_counter() + 10)
    assert m is not None
    sites = [inst.sites[inst.choices[k].site].name for k in m.choice]
    waits = [inst.choices[k].wait_ms for k in m.choice]
    assert sum(10.0 if s == "F" else 30.0 for s in sites) + sum(waits) <= 75.0
    assert sites.count("F") <= 2 and sites.count("S") >= 1
