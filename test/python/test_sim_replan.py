"""Re-planning inside the simulation (`agentc simulate --events F --replan-every S`):
a 4x load step that breaks the static plan is recovered after the switch, a device
loss re-plans once onto the devices left, no change re-plans nothing (the output is
plain `simulate`'s), one seed gives the same bytes, and bad options exit 1."""

from __future__ import annotations

import json
import os
import tomllib

import pytest
from click.testing import CliRunner

from agentc.cli import cli
from agentc.sim import replanning

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOICE = os.path.join(REPO, "examples", "voice_agent.agent")


def invoke(*args):
    return CliRunner().invoke(cli, ["simulate", *args], catch_exceptions=False)


def run_json(*args) -> dict:
    r = invoke(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


@pytest.fixture(scope="module")
def voice20(tmp_path_factory) -> str:
    """The voice agent planned for 20 req/s (a `load` clause: pools sized to the load)."""
    with open(VOICE, encoding="utf-8") as f:
        text = f.read()
    text = text.replace("  sla {", "  load 20 rps\n  sla {", 1)
    path = tmp_path_factory.mktemp("v") / "voice20.agent"
    path.write_text(text)
    return str(path)


def events(tmp_path, text: str) -> str:
    path = tmp_path / "events.toml"
    path.write_text(text)
    return str(path)


def test_a_load_step_is_recovered_by_replanning(voice20, tmp_path):
    """20 -> 80 req/s at 30 s. The re-plan every 5 s sees the step at 35 s (the rate
    over 30-35 s), plans for 1.5x the measured rate, and the new plan takes arrivals
    from 40 s. From 70 s (the backlog of 30-40 s drained; 60-70 s: 73%) at least 90% of
    requests meet every SLA term in each window with re-planning (measured 100%; before
    the step 96.7-100%), at most 5% without (measured 0%); before the step the two runs
    are the same requests on the same plan."""
    ev = events(tmp_path, "[[load]]\nat_s = 30\nrps = 80\n")
    d = run_json(voice20, "--duration", "100", "--warmup", "100", "--events", ev, "--replan-every", "5",
                 "--switch-delay", "5", "--window", "10")
    rp = d["replanning"]
    assert len(rp["replans"]) == 1, rp["replans"]
    r = rp["replans"][0]
    assert (r["t_s"], r["trigger"], r["applied_s"], r["error"]) == (35.0, "load", 40.0, None)
    assert abs(r["measured_rps"] - 80) < 16   # 5 s of Poisson(80/s): 400 +- 20 arrivals, 4 sigma
    assert r["planned_rps"] == pytest.approx(r["measured_rps"] * 1.5, rel=1e-2)
    assert sum(r["devices_after"].values()) > sum(r["devices_before"].values())
    assert r["usd_per_hr_after"] > r["usd_per_hr_before"]
    rows = {w["start_s"]: w for w in rp["windows"]}
    for start in (0.0, 10.0, 20.0):
        # arrivals of 20-30 s still queue when the new pools come at 40 s (the p99 differs)
        assert rows[start]["static"]["sla_attained"] == rows[start]["replanned"]["sla_attained"]
        assert rows[start]["static"]["sla_attained"] >= 0.9
    assert rows[0.0]["static"] == rows[0.0]["replanned"] and rows[10.0]["static"] == rows[10.0]["replanned"]
    for start in (70.0, 80.0, 90.0):
        static, replanned = rows[start]["static"], rows[start]["replanned"]
        assert replanned["sla_attained"] >= 0.9, (start, replanned)
        assert static["sla_attained"] <= 0.05, (start, static)
        # the $/hr of the plan in force: the new plan's once it applies
        assert replanned["usd_per_hr"] == pytest.approx(r["usd_per_hr_after"], rel=1e-5)
        assert static["usd_per_hr"] == pytest.approx(r["usd_per_hr_before"], rel=1e-5)
    # the switch is at 40 s: window 30-40 is all the old plan's
    assert rows[30.0]["replanned"]["usd_per_hr"] == pytest.approx(r["usd_per_hr_before"], rel=1e-5)
    assert rp["replanned"]["sla_attained"] > rp["static"]["sla_attained"] + 0.25  # measured 0.572 vs 0.081


def test_without_a_change_nothing_replans_and_the_output_is_plain_simulate(voice20):
    """At the plan's own load nothing moves: no re-plan, and every figure of the run
    is byte for byte what `simulate` prints without --replan-every."""
    args = (voice20, "--duration", "30", "--warmup", "50", "--window", "10")
    plain = run_json(*args)
    d = run_json(*args, "--replan-every", "5")
    rp = d.pop("replanning")
    assert rp["replans"] == []
    assert d == plain
    assert all(w["static"] == w["replanned"] for w in rp["windows"])
    # --replan-every without --events is allowed and sets the window (10 s) itself
    assert run_json(voice20, "--duration", "30", "--warmup", "50", "--replan-every", "5")["window_s"] == 10


def test_a_device_loss_replans_once_onto_the_devices_left(tmp_path):
    """The voice agent without a load clause runs on the whole fleet (8 B200s); 7 are
    lost at 15 s. One re-plan (at 15 s, trigger loss, at the rate the plan serves),
    on the inventory left: at most 1 B200, every pool within its count. The same
    seed gives the same bytes."""
    ev = events(tmp_path, "[[loss]]\nat_s = 15\npool = \"b200\"\ndevices = 7\n")
    args = (VOICE, "--load", "20", "--duration", "40", "--warmup", "50", "--events", ev, "--replan-every", "5",
            "--switch-delay", "5")
    r1 = invoke(*args, "--json")
    assert r1.exit_code == 0, r1.output
    d = json.loads(r1.output)
    rp = d["replanning"]
    assert len(rp["replans"]) == 1, rp["replans"]
    r = rp["replans"][0]
    assert (r["t_s"], r["trigger"], r["planned_rps"], r["applied_s"], r["error"]) == (15.0, "loss", 20, 20.0, None)
    with open(replanning.__file__.replace("sim/replanning.py", "catalog/default_cluster.toml"), "rb") as f:
        inventory = {p["name"]: p["count"] for p in tomllib.load(f)["pool"]}
    inventory["b200"] -= 7
    assert r["devices_after"].get("b200", 0) <= 1
    assert all(n <= inventory[pool] for pool, n in r["devices_after"].items())
    r2 = invoke(*args, "--json")
    assert r2.output == r1.output


def test_the_inventory_file_keeps_the_cluster_and_changes_counts(tmp_path):
    """A re-plan's cluster file is the plan's own with the counts left: nodes capped at
    the count, a pool with none left dropped with its links, and it loads."""
    from agentc.catalog.catalogs import package_file

    base = package_file("default_cluster.toml")
    dest = tmp_path / "c.toml"
    replanning.write_cluster(base, {"b200": 1, "h100": 3, "a100": 0}, str(dest))
    with open(base, "rb") as f:
        before = tomllib.load(f)
    with open(dest, "rb") as f:
        after = tomllib.load(f)
    pools = {p["name"]: p for p in after["pool"]}
    assert "a100" not in pools and pools["b200"]["count"] == 1 and pools["h100"]["count"] == 3
    assert pools["h100"]["nodes"] == 2 and pools["b200"]["nodes"] == 1
    assert all("a100" not in (x["a"], x["b"]) for x in after["link"])
    assert len(after["link"]) == len([x for x in before["link"] if "a100" not in (x["a"], x["b"])])
    assert {k: after[k] for k in ("pricing", "default_link")} == {k: before[k] for k in ("pricing", "default_link")}
    from agentc.catalog import load_catalog
    from agentc.catalog.clusters import load_cluster

    assert {p.name: p.count for p in load_cluster(str(dest), load_catalog()).pools}["h100"] == 3


@pytest.mark.parametrize("extra,message", [
    (("--switch-delay", "5"), "--switch-delay applies to re-planning"),
    (("--headroom", "2"), "--headroom applies to re-planning"),
    (("--replan-every", "0"), "--replan-every must be positive"),
    (("--replan-every", "5", "--switch-delay", "-1"), "--switch-delay must be non-negative"),
    (("--replan-every", "5", "--headroom", "0.5"), "--headroom must be at least 1"),
])
def test_bad_option_combinations_exit_1(voice20, extra, message):
    r = invoke(voice20, "--duration", "5", *extra)
    assert r.exit_code == 1 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_a_manifest_whose_program_cannot_be_found_is_a_located_error(tmp_path):
    """Re-planning a manifest needs its program (by sha256): a manifest copied away
    from it is an error at its `inputs`, exit 1, before anything runs."""
    from agentc.sim import plan

    m = plan.compile_manifest(VOICE, None, ())
    m["inputs"][0]["sha256"] = "0" * 64
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(m, indent=2))
    r = invoke(str(path), "--load", "20", "--duration", "5", "--replan-every", "5")
    assert r.exit_code == 1, r.output
    assert f"{path}:" in r.output and "error: cannot find the source" in r.output


def test_a_switch_applies_after_its_delay_and_shrinks_a_pool_as_running_work_ends():
    """Hand-worked: 2 devices, 10 ms per request, two requests at 0. At 5 ms the
    controller switches to a 1-device plan with a 3 ms delay: at 8 both still run and
    finish at 10; the two requests at 12 then share one device, 12-22 and 22-32 (on
    the old plan they would both end at 22). Then a loss undone by a re-plan."""
    from agentc.sim import arrivals, model, plan

    def manifest(n):
        return {"schema_version": "1.2", "agent": "t", "sla": {},
                "cluster": {"pools": [{"name": "p", "count": n}]},
                "ops": [{"id": "a", "kind": "compute.cpu", "pool": "p", "tp": 1, "est_latency_ms": 10.0,
                         "busy_ms": 10.0, "region": "", "inputs": []}],
                "edges": [], "totals": {"e2e_ms": 10.0}, "regions": {}, "returns": ["a"]}

    two, one = plan.from_manifest(manifest(2)), plan.from_manifest(manifest(1))
    arr = [arrivals.Arrival(t) for t in (0.0, 0.0, 12.0, 12.0)]
    calls = []

    def decide(sim):
        calls.append(sim.env.now)
        if len(calls) == 1:
            sim.switch(one, 3.0)

    res = model.simulate(two, arr, controller=model.Controller(5.0, decide))
    assert calls == [5.0, 10.0]
    assert [r.end_ms for r in res.requests] == pytest.approx([10.0, 10.0, 22.0, 32.0])
    assert [r.end_ms for r in model.simulate(two, arr).requests] == pytest.approx([10.0, 10.0, 22.0, 22.0])
    # a loss at 1 ms (both devices busy: one retires at 10) then a switch at 5 ms back
    # to 2 devices: the retiring device stays, so the requests at 12 run at once again
    calls.clear()

    def regrow(sim):
        calls.append(sim.env.now)
        if len(calls) == 1:
            sim.switch(two, 0.0)

    res = model.simulate(two, arr, losses=(model.Loss(1.0, "p", 1),), controller=model.Controller(5.0, regrow))
    assert [r.end_ms for r in res.requests] == pytest.approx([10.0, 10.0, 22.0, 22.0])
    lost = model.simulate(two, arr, losses=(model.Loss(1.0, "p", 1),))
    assert [r.end_ms for r in lost.requests] == pytest.approx([10.0, 10.0, 22.0, 32.0])
