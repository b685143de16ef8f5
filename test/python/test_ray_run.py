"""`agentc run --ray` and the Ray backend (agentc/deploy/ray_run.py) on a local Ray:
a two-pool CPU plan gives the in-process `agentc run`'s bytes, 50 concurrent requests
get their own answers, and a pool actor killed mid-run loses and repeats no request."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from agentc.cli import cli

# Every test that starts Ray runs in one pytest-xdist worker (one Ray per session).
pytestmark = pytest.mark.xdist_group("ray")

CORPUS = ["The cat sat on the mat.", "Paris is the capital of France.",
          "Compilers translate programs into machine code.", "The stock market fell sharply today.",
          "Bananas are rich in potassium.", "agentc compiles agent programs onto clusters of devices.",
          "A GPU runs thousands of threads at once.", "Rain is expected tomorrow afternoon."]

# Embedding on epyc, retrieval on xeon, the tool back on epyc: the prices below make the
# planner split the program, so values cross pools twice.
RAG = """\
model minilm = minilm-l6
index docs(size=8, dim=384)

agent rag(question: text) -> json {
  e    = embed(minilm, question)
  hits = retrieve(docs, e, k=3)
  r    = tool tag(hits, latency=2ms, payload=1KB)
  return r
}
"""

TWO_POOLS = """\
name = "two-cpu"
pricing = "tco"

[[pool]]
name = "xeon"
device = "xeon-8480"
count = 2
nodes = 2

[[pool]]
name = "epyc"
device = "epyc-9654"
count = 2
nodes = 2

[[profile]]
op = "retrieve.search"
device = "epyc-9654"
latency_ms = 0.01
usd_per_call = 0.001

[[profile]]
op = "retrieve.search"
device = "xeon-8480"
latency_ms = 0.01
usd_per_call = 0.0
"""

LOOP = """\
agent loopy(q: text) -> json {
  r = tool grow(q, latency=2ms, payload=1KB)
  loop max 6 while 0.6 {
    r = tool grow(r, latency=2ms, payload=1KB)
  }
  if 0.5 {
    r = tool left(r, latency=1ms, payload=1KB)
  } else {
    r = tool right(r, latency=1ms, payload=1KB)
  }
  return r
}
"""

TOOLS = textwrap.dedent("""\
    def tag(hits):
        return {"ids": [h["id"] for h in hits], "top": hits[0]["text"]}

    def grow(x):
        return (x if isinstance(x, str) else x["text"]) + "+"

    def left(x):
        return "L:" + x

    def right(x):
        return "R:" + x

    def boom(x):
        raise ValueError("no service")
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    (d / "rag.agent").write_text(RAG)
    (d / "loop.agent").write_text(LOOP)
    (d / "two.toml").write_text(TWO_POOLS)
    (d / "corpus.json").write_text(json.dumps(CORPUS))
    (d / "raytools.py").write_text(TOOLS)
    sys.path.insert(0, str(d))   # the actors get the caller's import path (Program.make)
    yield d
    sys.path.remove(str(d))
    sys.modules.pop("raytools", None)


def _rag_args(files):
    return [str(files / "rag.agent"), "--cluster", str(files / "two.toml"),
            "--index", f"docs={files / 'corpus.json'}", "--tool", "tag=raytools:tag"]


def _cli(args):
    res = CliRunner().invoke(cli, ["run", *args], prog_name="agentc")
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def rag_plan(files, ray_local):
    from agentc.deploy.ray_run import Program, RayPlan
    from agentc.runtime.session import RunConfig

    cfg = RunConfig({}, {"docs": str(files / "corpus.json")}, {"tag": "raytools:tag"})
    plan = RayPlan(Program.make(str(files / "rag.agent"), str(files / "two.toml"), cfg=cfg))
    yield plan
    plan.close()


@pytest.fixture(scope="module")
def reference(files):
    """The in-process executor's answers (what `agentc run` prints), one per question."""
    from agentc.deploy.ray_run import Program, compile_placed
    from agentc.runtime import session

    cfg = session.RunConfig({}, {"docs": str(files / "corpus.json")}, {"tag": "raytools:tag"})
    ex = session.prepare(compile_placed(Program.make(str(files / "rag.agent"), str(files / "two.toml"))), cfg)
    return lambda q: ex.run([q])


def test_the_plan_uses_both_pools(rag_plan):
    pools = {g.pool: sorted(g.replicas) for g in rag_plan.groups.values()}
    assert pools == {"epyc": ["e.encode", "e.pool", "r.compute", "r.lookup"], "xeon": ["hits"]}
    assert rag_plan.pinned   # bundles hold the agentc_pool_<pool> resources the nodes advertise


def test_two_pool_answer_is_the_in_process_runs_bytes(files, rag_plan, capsys):
    from agentc.cli.run import _show

    question = "what does a compiler do with a program?"
    local = _cli([*_rag_args(files), "--input", question])
    capsys.readouterr()
    _show(rag_plan.run("bytes", [question]), "json", None)   # what `run --ray` prints
    assert capsys.readouterr().out == local
    assert json.loads(local)["top"] == "Compilers translate programs into machine code."


def test_run_ray_cli_and_decisions_match_the_in_process_run(files, ray_local):
    args = [str(files / "loop.agent"), *[f"--tool={t}=raytools:{t}" for t in ("grow", "left", "right")]]
    outs = set()
    for seed in (0, 3):
        local = _cli([*args, "--input", "q", "--seed", str(seed)])
        assert _cli([*args, "--input", "q", "--seed", str(seed), "--ray"]) == local
        outs.add(local)
    assert len(outs) == 2   # the seeds draw different trips or arms: decisions really ran


def test_an_op_failing_in_an_actor_is_the_located_error_of_agentc_run(files, ray_local):
    args = [str(files / "loop.agent"), "--input", "q", "--tool=grow=raytools:boom"]
    local = CliRunner().invoke(cli, ["run", *args], prog_name="agentc")
    on_ray = CliRunner().invoke(cli, ["run", *args, "--ray"], prog_name="agentc")
    assert local.exit_code == on_ray.exit_code == 1
    assert "loop.agent:2:7: error: tool 'grow' failed: ValueError: no service" in local.output
    assert on_ray.output == local.output


def test_a_cluster_without_pool_resources_gets_cpu_bundles(files, ray_local):
    """A laptop or a fresh `ray start` advertises no agentc_pool_* resources: the pools'
    bundles are CPU shares instead, and the answer is the same. An actor killed for good
    is a run error (exit 1), not a compiler bug."""
    from agentc.deploy.ray_run import Program, RayPlan
    from agentc.runtime.session import RunConfig

    laptop = files / "laptop.toml"
    laptop.write_text('name = "laptop"\n\n[[pool]]\nname = "laptop"\ndevice = "xeon-8480"\ncount = 1\nnodes = 1\n')
    cfg = RunConfig({}, {}, {t: f"raytools:{t}" for t in ("grow", "left", "right")})
    plan = RayPlan(Program.make(str(files / "loop.agent"), str(laptop), cfg=cfg))
    try:
        assert not plan.pinned
        assert plan.run("l1", ["q"]) == json.loads(_cli([str(files / "loop.agent"), "--cluster", str(laptop),
                                                         "--input", "q", *[f"--tool={t}=raytools:{t}" for t in
                                                                           ("grow", "left", "right")]]))
        # an actor gone for good (no restart) fails the request with a run error, not a bug
        import ray

        from agentc.runtime.executor import RunError

        ray.kill(plan.actors["laptop"][0], no_restart=True)
        with pytest.raises(RunError, match="a pool actor was lost and not restarted"):
            plan.run("l2", ["q"])
    finally:
        plan.close()


def _many(plan, ids, questions):
    async def go():
        return await asyncio.gather(*[plan.arun(i, [q]) for i, q in zip(ids, questions)])
    return asyncio.run(go())


def test_fifty_concurrent_requests_get_their_own_answers(rag_plan, reference):
    questions = [f"{CORPUS[i % 8].split()[1]} question number {i}" for i in range(50)]
    answers = _many(rag_plan, [f"c{i}" for i in range(50)], questions)
    assert len(answers) == 50
    for q, a in zip(questions, answers):
        assert json.dumps(a, sort_keys=True) == json.dumps(reference(q), sort_keys=True)
    assert len({json.dumps(a, sort_keys=True) for a in answers}) > 4   # not one answer for all


def test_a_killed_actor_loses_no_request_and_runs_none_twice(rag_plan, reference):
    import ray

    epyc, xeon = rag_plan.actors["epyc"][0], rag_plan.actors["xeon"][0]
    before = ray.get([epyc.stats.remote(), xeon.stats.remote()])
    questions = [f"kill test {i}: {CORPUS[i % 8]}" for i in range(30)]
    ids = [f"k{i}" for i in range(30)]

    async def go():
        tasks = [asyncio.create_task(rag_plan.arun(i, [q])) for i, q in zip(ids, questions)]
        await asyncio.sleep(0.2)
        in_flight = sum(not t.done() for t in tasks)
        ray.kill(epyc, no_restart=False)       # a crash: Ray restarts it, calls are retried
        dup = asyncio.gather(*[rag_plan.arun(i, [q]) for i, q in zip(ids, questions)])
        return in_flight, await asyncio.gather(*tasks), await dup
    in_flight, answers, again = asyncio.run(go())
    assert in_flight > 0   # the kill landed mid-run
    after = ray.get([epyc.stats.remote(), xeon.stats.remote()])
    assert after[0]["pid"] != before[0]["pid"]   # it really died and came back
    for q, a, b in zip(questions, answers, again):
        assert a == b == json.loads(json.dumps(reference(q)))
    # The surviving pool ran each request's one op exactly once, duplicates included.
    assert after[1]["executed"] - before[1]["executed"] == len(ids)


def test_replicas_follow_the_plan_up_to_the_cap(files):
    """Under load the planner gives an op several replicas; each pool gets that many
    actors (at most --max-replicas) and each op its own count, read here from the IR."""
    from agentc.deploy.ray_run import Program, RayPlan, compile_placed, pool_groups
    from agentc.passes._ir import get, walk
    from agentc.passes._plan_ctx import entry_graph

    src = files / "rag_load.agent"
    src.write_text(RAG.replace("-> json {", "-> json {\n  load 700 rps"))
    c = compile_placed(Program.make(str(src), str(files / "two.toml")))
    planned = {get(op, "op_id"): (get(op, "pool"), int(get(op, "replicas"))) for op in walk(entry_graph(c.module))
               if get(op, "pool")}
    assert max(r for _, r in planned.values()) >= 2   # the load really asks for replicas
    for cap in (1, 2, 8):
        groups = {g.pool: g for g in pool_groups(c, cap)}
        for op_id, (pool, reps) in planned.items():
            assert groups[pool].replicas[op_id] == min(reps, cap)
        for pool, g in groups.items():
            assert g.actors == min(cap, max(r for p, r in planned.values() if p == pool))
    # requests spread over an op's replicas, one request's ops stay on one actor
    plan = object.__new__(RayPlan)
    plan.groups = {g.pool: g for g in pool_groups(c, 8)}
    plan.actors = {p: list(range(g.actors)) for p, g in plan.groups.items()}
    wide = next(op_id for op_id, (_, r) in planned.items() if r >= 2)
    pool = planned[wide][0]
    assert len({plan.actor_for(pool, wide, f"r{i}") for i in range(40)}) == planned[wide][1]


@pytest.mark.slow
def test_serve_answers_http_requests_concurrently(files, ray_local):
    """`agentc serve`'s application on Ray Serve: concurrent POSTs, a repeated id answered
    from the record, bad bodies refused with 400."""
    import concurrent.futures
    import socket

    from ray import serve

    from agentc.deploy.ray_run import Program, RayPlan, ingress
    from agentc.runtime.session import CPU_CLUSTER, RunConfig

    cfg = RunConfig({}, {}, {t: f"raytools:{t}" for t in ("grow", "left", "right")})
    prog = Program.make(str(files / "loop.agent"), CPU_CLUSTER, cfg=cfg)
    with socket.socket() as probe:   # a free port: other jobs share this machine
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plan = RayPlan(prog)   # as `agentc serve` does: the pools' actors started by the caller
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(ingress(prog, actors=plan.actors), name="agentc", route_prefix="/")
    try:
        def post(body: bytes):
            return _post(port, body, timeout=60)
        bodies = [json.dumps({"input": [f"q{i}"], "id": f"h{i}"}).encode() for i in range(8)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, bodies + bodies[:2]))
        for i, (status, body) in enumerate(answers[:8]):
            assert status == 200 and body["id"] == f"h{i}" and body["output"].startswith(("L:q", "R:q")), body
            assert body["output"].split("q", 1)[1].lstrip("0123456789").strip("+") == ""
        assert answers[8] == answers[0] and answers[9] == answers[1]
        assert post(b"not json")[0] == 400
        assert post(json.dumps({"id": "x"}).encode())[0] == 400
    finally:
        serve.shutdown()
        plan.close()


@pytest.mark.slow
def test_rag_with_an_llm_samples_per_request_as_agentc_run(files, ray_local, tmp_path):
    """The KV cache crosses the object store (prefill -> decode) and top-k sampling draws
    per request from --seed: concurrent requests give one `agentc run` each's text."""
    from test_run_agent import RAG_LLM, _tiny_llama

    from agentc.deploy.ray_run import Program, RayPlan, compile_placed
    from agentc.runtime import session
    from agentc.runtime.weights import default_encoder_path, load_checkpoint

    _tiny_llama(tmp_path / "tiny", load_checkpoint(default_encoder_path()).tokenizer_json)
    src = tmp_path / "rag_llm.agent"
    src.write_text(RAG_LLM)
    cfg = session.RunConfig({"tiny": str(tmp_path / "tiny")}, {"docs": str(files / "corpus.json")}, {},
                            seed=5, top_k=20, temperature=10.0, max_new_tokens=6)
    prog = Program.make(str(src), session.CPU_CLUSTER, cfg=cfg)
    questions = [f"what is item {i}?" for i in range(4)]
    expected = [session.prepare(compile_placed(prog), cfg).run([q]) for q in questions]   # one process each
    plan = RayPlan(prog)
    try:
        assert _many(plan, [f"t{i}" for i in range(4)], questions) == expected
    finally:
        plan.close()
    assert len(set(expected)) > 1


def test_serve_refuses_a_bad_tool_before_starting_anything(files):
    res = CliRunner().invoke(cli, ["serve", str(files / "loop.agent"), "--tool", "grow=raytools:nope", "--port",
                                   "8000", "--ray"], prog_name="agentc")
    assert res.exit_code == 1
    assert "error: cannot load tool 'raytools:nope': module 'raytools' has no attribute 'nope'" in res.output


def _post(port: int, body: bytes, timeout: float = 120):
    """(status, JSON body) of a POST to a local Serve ingress; HTTP errors are answers too."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
