"""A mixture-of-experts call: its router, experts and merge run layer by layer in turn,
so the plan keeps them on one pool, and the KV cache moves (and is charged) to the pool
where decode's attention reads it. Before this rule the default cluster put the decode
router on a CPU pool: the 33.5 MB cache went to the CPU and a 262 KB tensor on to the
experts' GPUs, so the cache never reached them and was never charged there."""

import json
import subprocess
import sys

import pytest

# Mixtral 8x7B (models.toml): 32 layers, 8 KV heads of 128 dims, fp16.
LAYERS, KV_WIDTH, FP16 = 32, 8 * 128, 2

SPLIT_CLUSTER = """
name = "moe-split"
pricing = "tco"
[[pool]]
name = "cpu"
device = "epyc-9654"
count = 2
[[pool]]
name = "fast"
device = "B200"
count = 8
[[pool]]
name = "cheap"
device = "Gaudi3"
count = 8
[[link]]
a = "fast"
b = "cheap"
gbps = 400
latency_ms = 0.01
"""


def _plan(tmp_path, sla: str, isl: int, osl: int, cluster: str | None) -> dict:
    src = tmp_path / "moe.agent"
    src.write_text(f"model moe = mixtral-8x7b\nagent a(q: text) -> text {{\n  {sla}\n"
                   f"  y = llm(moe, q, in={isl}, out={osl})\n  return y\n}}\n")
    cmd = [sys.executable, "-m", "agentc", "plan", str(src), "--json"]
    if cluster:
        (tmp_path / "cluster.toml").write_text(cluster)
        cmd += ["--cluster", str(tmp_path / "cluster.toml")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _phase_pools(plan: dict) -> dict[str, set]:
    pools = {o["id"]: o["pool"] for o in plan["ops"]}
    return {phase: {pools[f"y.{phase}.gate"], pools[f"y.{phase}"], pools[f"y.{phase}.merge"]}
            for phase in ("prefill", "decode")}


@pytest.mark.parametrize("sla, cluster", [
    ("sla { latency < 5000ms }", None),          # the default cluster (the old bug's case)
    ("sla { tbt < 10ms }", SPLIT_CLUSTER),       # prefill and decode on different pools
], ids=["default-cluster", "split-cluster"])
def test_router_experts_and_merge_share_a_pool_per_phase(tmp_path, sla, cluster):
    plan = _plan(tmp_path, sla, 256 if cluster is None else 2048, 32 if cluster is None else 256, cluster)
    for phase, pools in _phase_pools(plan).items():
        assert len(pools) == 1, (phase, pools)


def test_kv_cache_moves_to_decode_attention_and_is_charged(tmp_path):
    isl = 2048
    plan = _plan(tmp_path, "sla { tbt < 10ms }", isl, 256, SPLIT_CLUSTER)
    pools = _phase_pools(plan)
    assert pools["prefill"] != pools["decode"]  # the case this test is about
    (decode_pool,) = pools["decode"]
    kv = [e for e in plan["edges"] if e["src"] == "y.prefill.merge"]
    assert len(kv) == 1 and kv[0]["dst"] == "y.decode.gate" and kv[0]["dst_pool"] == decode_pool
    # K and V of every layer for every prompt token, computed here from the model card
    assert kv[0]["bytes"] == pytest.approx(2 * LAYERS * KV_WIDTH * isl * FP16, rel=1e-5)
    # 268 MB at 400 Gb/s is 5.37 ms, plus the link's 0.01 ms
    assert kv[0]["ms"] == pytest.approx(2 * LAYERS * KV_WIDTH * isl * FP16 * 8 / 400e9 * 1e3 + 0.01, rel=1e-4)
