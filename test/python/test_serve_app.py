"""`agentc deploy --format ray-serve` runs: the serve.yaml it writes validates against Ray's
ServeDeploySchema, and deployed as `serve run serve.yaml` deploys it (Serve's controller
imports `import_path` and calls it with `args`), the application answers HTTP and handle
requests with the bytes of the in-process `agentc run`, each request once; bad bodies
are 400s; a GPU plan's config is right and its builder refuses it in words on this
GPU-less Ray.

The program crosses pools both ways on a two-pool CPU plan: MiniLM embeds and a seeded
Llama of the test checkpoints prefills on epyc, retrieval and decoding run on xeon, so
the KV cache travels through Ray's object store."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os

import pytest
import yaml
from click.testing import CliRunner
from ray.serve.schema import ServeDeploySchema

from agentc.cli import cli
from agentc.diagnostics import UsageError
from agentc.runtime.weights import default_encoder_path, load_checkpoint

from helpers import cli_ok, deploy_serve_config, free_port, serve_shutdown
from test_ray_run import CORPUS, TWO_POOLS, _post
from test_run_agent import RAG_LLM, _tiny_llama

# Every test that starts Ray runs in one pytest-xdist worker (one Ray per session).
pytestmark = pytest.mark.xdist_group("ray")

# Greedy, so one prepared executor answers every question as a fresh `agentc run` would
# (per-request sampling draws over Ray are test_ray_run's; the pool code is the same).
RUN_OPTS = ["--max-new-tokens", "6"]

GPU_CLUSTER = """\
name = "gpu-and-cpu"

[[pool]]
name = "b200"
device = "B200"
count = 2

[[pool]]
name = "xeon"
device = "xeon-8480"
count = 2
"""


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A user's folder: the program, its cluster, corpus and checkpoint, compiled and
    deployed there (relative paths, as a user types them)."""

    d = tmp_path_factory.mktemp("serveapp")
    (d / "rag.agent").write_text(RAG_LLM)
    (d / "two.toml").write_text(TWO_POOLS)
    (d / "corpus.json").write_text(json.dumps(CORPUS))
    _tiny_llama(d / "tiny", load_checkpoint(default_encoder_path()).tokenizer_json)
    with _cwd(d):
        cli_ok("compile", "rag.agent", "--cluster", "two.toml", "--targets", "cpu", "-o", "out", "-q")
        # the runtime's options go into serve.yaml's args (absolute: Serve's controller
        # builds the app in the test's working directory, not this folder)
        cli_ok("deploy", "out", "--format", "ray-serve", "-o", "dep", "-q", "--weights", f"tiny={d / 'tiny'}",
                "--index", f"docs={d / 'corpus.json'}")
    return d


def _run_args(d):
    return ["--weights", f"tiny={d / 'tiny'}", "--index", f"docs={d / 'corpus.json'}", *RUN_OPTS]


@pytest.fixture(scope="module")
def reference(project):
    """The in-process executor's answer per question (what `agentc run out/` computes)."""
    from agentc.deploy.ray_run import Program, compile_placed
    from agentc.runtime import session

    cfg = session.RunConfig({"tiny": str(project / "tiny")}, {"docs": str(project / "corpus.json")}, {},
                            max_new_tokens=6)
    ex = session.prepare(compile_placed(Program.make(str(project / "rag.agent"), str(project / "two.toml"))), cfg)
    return lambda q: ex.run([q])


@pytest.fixture(scope="module")
def app(project, ray_local):
    """serve.yaml deployed as `serve run serve.yaml` deploys it (serve_start, then the
    controller builds the application from import_path and args), with the options a
    user adds to args; Serve is shut down afterwards."""
    from ray import serve

    doc = yaml.safe_load((project / "dep" / "serve.yaml").read_text())
    (spec,) = doc["applications"]
    assert (spec["args"]["weights"], spec["args"]["index"], spec["args"]["tool"]) == \
        ([f"tiny={project / 'tiny'}"], [f"docs={project / 'corpus.json'}"], [])   # from `deploy --weights/--index`
    spec["args"].update(manifest=str(project / "dep" / "manifest.json"), max_new_tokens=6)
    port = free_port()
    try:
        status = deploy_serve_config(doc, port, 400)
        assert status.status == "RUNNING", status.message
        yield {"port": port, "name": spec["name"], "handle": serve.get_app_handle(spec["name"])}
    finally:
        serve_shutdown()


def _executed(name: str) -> dict[str, int]:
    """Op calls each pool replica has really run (not answered from its record)."""
    from ray import serve

    return {pool: serve.get_deployment_handle(f"pool-{pool}", name).stats.remote().result()["executed"]
            for pool in ("epyc", "xeon")}


# --------------------------------------------------------------------------- the written config

def test_serve_yaml_validates_and_names_importable_code(project):
    from ray._common.utils import import_attr

    from agentc.deploy import serve_app

    doc = yaml.safe_load((project / "dep" / "serve.yaml").read_text())
    ServeDeploySchema.model_validate(doc)
    (spec,) = doc["applications"]
    assert import_attr(spec["import_path"]) is serve_app.build_app
    assert {import_attr(p["class"]) for p in spec["args"]["pools"]} == {serve_app.PoolDeployment}
    assert spec["args"]["manifest"] == "manifest.json"
    assert (project / "dep" / "manifest.json").read_bytes() == (project / "out" / "manifest.json").read_bytes()
    m = json.loads((project / "out" / "manifest.json").read_text())
    for d in spec["deployments"]:   # the plan's replicas (autoscaling bounds) and CPUs, pinned to the pool
        pool = d["name"].removeprefix("pool-")
        ops = [o for o in m["ops"] if o["pool"] == pool and o["kind"] not in ("llm.prefill", "llm.decode")]
        reps = max(o["replicas"] for o in ops)
        assert d["autoscaling_config"] == {"min_replicas": 1, "initial_replicas": reps, "max_replicas": reps}
        assert d["ray_actor_options"] == {"num_cpus": max(o["tp"] for o in ops),
                                          "resources": {f"agentc_pool_{pool}": 1}}


def test_a_gpu_plan_is_configured_and_refused_in_words(tmp_path, ray_local):
    """GPU pools get tp GPUs per replica with Ray's accelerator label in serve.yaml (a
    placement group bundle per replica that the replica fills); on this GPU-less Ray the
    builder refuses the plan in words, naming the missing devices (test_serve_gpu.py
    checks the deployments as Ray builds them)."""
    from agentc.deploy import serve_app

    (tmp_path / "rag.agent").write_text(RAG_LLM)
    (tmp_path / "gpu.toml").write_text(GPU_CLUSTER)
    with _cwd(tmp_path):
        cli_ok("compile", "rag.agent", "--cluster", "gpu.toml", "--targets", "cpu", "-o", "out", "-q")
        cli_ok("deploy", "out", "--format", "ray-serve", "-o", "dep", "-q")
    doc = yaml.safe_load((tmp_path / "dep" / "serve.yaml").read_text())
    ServeDeploySchema.model_validate(doc)
    (spec,) = doc["applications"]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    on_gpu = [o for o in m["ops"] if o["pool"] == "b200"]
    assert on_gpu, "the plan puts work on the B200 pool"
    for d in spec["deployments"]:
        if d["name"] == "pool-b200":
            tp = max(o["tp"] for o in on_gpu if o["id"] in {i for p in spec["args"]["pools"] for i in p["ops"]})
            assert d["ray_actor_options"] == {"num_gpus": tp, "num_cpus": 0, "accelerator_type": "B200",
                                              "resources": {"agentc_pool_b200": tp}}
            assert d["placement_group_bundles"] == [{"GPU": tp, "agentc_pool_b200": tp,
                                                     "accelerator_type:B200": 0.001}]
    for entry in spec["args"]["llm"]:
        for cfg in entry["args"].get("llm_configs", []) + [entry["args"].get(k) for k in
                                                            ("prefill_config", "decode_config") if k in entry["args"]]:
            if "agentc_pool_b200" in cfg["placement_group_config"]["bundle_per_worker"]:
                assert cfg["accelerator_type"] == "B200"
    with pytest.raises(UsageError) as err:
        serve_app.build_app({"manifest": str(tmp_path / "dep" / "manifest.json")})
    msg = err.value.message
    assert "the Ray cluster cannot hold the plan's pools" in msg and "needs B200 devices" in msg, msg


def test_bad_builder_args_are_usage_errors(project):
    from agentc.deploy import serve_app

    with pytest.raises(UsageError, match="args need 'manifest'"):
        serve_app.build_app({})
    with pytest.raises(UsageError, match="no manifest at"):
        serve_app.build_app({"manifest": str(project / "nowhere")})
    with pytest.raises(UsageError, match=r"args.weights must be a list of NAME=VALUE strings"):
        serve_app.build_app({"manifest": str(project / "dep"), "weights": "tiny=x"})
    with pytest.raises(UsageError, match=r"args.seed must be an integer"):
        serve_app.build_app({"manifest": str(project / "dep"), "seed": "5"})
    with pytest.raises(UsageError, match=r"unknown keys: indexes; the builder reads manifest, weights, index"):
        serve_app.build_app({"manifest": str(project / "dep"), "indexes": ["docs=corpus.json"]})


def test_the_router_keeps_a_request_on_one_replica():
    """Op call (rid, step, op_id): replica crc32(rid) mod (the op's replicas), whatever
    order Serve lists the replicas in; an op with one replica always gets the first."""
    import asyncio
    import zlib
    from types import SimpleNamespace

    from agentc.deploy.serve_app import ByRequest

    router = object.__new__(ByRequest)
    router.initialize_state(replicas={"wide": 3, "one": 1})
    reps = [SimpleNamespace(replica_id=SimpleNamespace(unique_id=u)) for u in ("c", "a", "d", "b")]

    def pick(rid, op_id, order):
        req = SimpleNamespace(args=[rid, 0, op_id])
        ((chosen,),) = asyncio.run(router.choose_replicas(order, req))
        return chosen.replica_id.unique_id

    for i in range(30):
        rid = f"r{i}"
        assert pick(rid, "wide", reps) == pick(rid, "wide", reps[::-1]) == "abcd"[zlib.crc32(rid.encode()) % 3]
        assert pick(rid, "one", reps) == "a"
    assert len({pick(f"r{i}", "wide", reps) for i in range(30)}) == 3


def test_the_router_keeps_a_request_where_it_started_while_pools_autoscale():
    """The pool deployments autoscale: a replica added mid-request does not move a request
    that has started (its memory store and sampler stay on one replica); a replica that
    went away is replaced by the rule's choice among those left."""
    import asyncio
    import zlib
    from types import SimpleNamespace

    from agentc.deploy.serve_app import ByRequest

    router = object.__new__(ByRequest)
    router.initialize_state(replicas={"wide": 4})
    rep = {u: SimpleNamespace(replica_id=SimpleNamespace(unique_id=u)) for u in "abcd"}

    def pick(rid, names):
        req = SimpleNamespace(args=[rid, 0, "wide"])
        ((chosen,),) = asyncio.run(router.choose_replicas([rep[n] for n in names], req))
        return chosen.replica_id.unique_id

    rids = [f"s{i}" for i in range(40)]
    first = {rid: pick(rid, "ab") for rid in rids}          # two replicas running
    assert first == {rid: "ab"[zlib.crc32(rid.encode()) % 2] for rid in rids}
    assert all(pick(rid, "abcd") == first[rid] for rid in rids)   # scaled up: nobody moves
    fresh = [f"n{i}" for i in range(40)]
    assert {pick(rid, "abcd") for rid in fresh} == set("abcd")    # new requests use all four
    for rid in rids:                                              # "a" went away
        assert pick(rid, "bcd") == (first[rid] if first[rid] != "a" else "bcd"[zlib.crc32(rid.encode()) % 3])


# --------------------------------------------------------------------------- the running application

def test_an_http_answer_is_agentc_runs_bytes(project, app, capsys):
    from agentc.cli.run import _show

    question = "what does a compiler do with a program?"
    with _cwd(project):
        local = cli_ok("run", "out", "--input", question, *_run_args(project))
    status, body = _post(app["port"], json.dumps({"input": [question], "id": "bytes"}).encode())
    assert status == 200 and body["id"] == "bytes", body
    capsys.readouterr()
    _show(body["output"], "text", None)   # as `agentc run` prints a text output
    assert capsys.readouterr().out == local and local.strip()


def test_concurrent_requests_are_each_answered_once(project, app, reference):
    questions = [f"{CORPUS[i % 8].split()[1]} question {i}" for i in range(10)]
    bodies = [json.dumps({"input": [q], "id": f"c{i}"}).encode() for i, q in enumerate(questions)]
    start = _executed(app["name"])
    assert _post(app["port"], json.dumps({"input": ["one alone"], "id": "alone"}).encode())[0] == 200
    before = _executed(app["name"])
    per_request = {p: before[p] - start[p] for p in before}   # op calls one request makes per pool
    assert all(per_request.values())   # both pools work on every request
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda b: _post(app["port"], b), bodies + bodies[:2]))
    after = _executed(app["name"])
    for i, (q, (status, body)) in enumerate(zip(questions, answers)):
        assert status == 200 and body == {"id": f"c{i}", "output": reference(q)}, body
    assert answers[10] == answers[0] and answers[11] == answers[1]   # repeated ids: the recorded answers
    assert len({body["output"] for _, body in answers}) > 3          # not one answer for all
    # Each distinct request ran its ops once on each pool; the repeats ran nothing.
    assert {p: after[p] - before[p] for p in after} == {p: n * len(questions) for p, n in per_request.items()}


def test_the_handle_answers_as_http_does(app, reference):
    handle = app["handle"]
    q = "Bananas and potassium"
    assert handle.ask.remote("h1", [q]).result() == reference(q)


def test_bad_bodies_are_4xx_with_a_message(app):
    for body in (b"not json", b"[1, 2]", json.dumps({"id": "x"}).encode(), json.dumps({"input": 3}).encode()):
        status, answer = _post(app["port"], body)
        assert status == 400 and "error" in answer and "Traceback" not in answer["error"], (body, answer)
    status, answer = _post(app["port"], json.dumps({"input": [], "id": "none"}).encode())
    assert status == 422 and answer["id"] == "none" and "Traceback" not in answer["error"], answer


def test_the_host_engine_runs_an_llm_split_across_pools(project, tmp_path):
    """Prefill on epyc, `kv.transfer` across, decode on xeon: the pools' host programs
    hand the whole KV value over (a recv's buffer once held only the planner's estimate
    of it, the prompt's rows of the first layers, so every token after the first was
    wrong), and their tokens are the executor's and a float64 Llama's (greedy, no cache)
    on the BERT reference's top 3."""
    from tokenizers import Tokenizer

    from references.bert_ref import BertRef
    from references.llama_ref import LlamaRef
    from test_run_agent import _generate

    ops = json.loads((project / "out" / "manifest.json").read_text())["ops"]
    assert {o["kind"]: o["pool"] for o in ops if o["kind"] in ("llm.prefill", "llm.decode")} == \
        {"llm.prefill": "epyc", "llm.decode": "xeon"}
    question = "Where is the capital of France?"
    args = ["--input", question, "--weights", f"tiny={project / 'tiny'}", "--index", f"docs={project / 'corpus.json'}"]
    with _cwd(project):
        host = CliRunner().invoke(cli, ["run", "out", "--engine", "host", *args], prog_name="agentc")
        executor = CliRunner().invoke(cli, ["run", "out", "--engine", "executor", *args], prog_name="agentc")
    assert host.exit_code == 0, host.output
    assert executor.exit_code == 0, executor.output
    ckpt = load_checkpoint(default_encoder_path())
    top = BertRef(ckpt.tensors, ckpt.tokenizer_json, heads=12).rank(question, CORPUS, 3)
    tok = Tokenizer.from_str(ckpt.tokenizer_json)
    tok.no_truncation()
    tok.no_padding()
    ref = LlamaRef(_tiny_llama(tmp_path / "tiny", ckpt.tokenizer_json), layers=2, heads=4, kv_heads=2,
                   rope_theta=10000.0, eps=1e-6)
    want = _generate(ref, tok.encode(question + "\n" + "\n".join(CORPUS[i] for i in top)).ids, 12)
    assert len(set(want)) > 3     # a real sequence, not one token repeated
    assert host.output == executor.output == tok.decode(want) + "\n"
