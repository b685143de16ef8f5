"""Dynamic scenarios (`--events`): arrivals that follow load steps and ramps (counts
against the integral of the rate), a pool losing devices (a hand-worked timeline),
SLA attainment per window, the re-planning hook, and bad events files as located
errors with exit 1."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from agentc.cli import cli
from agentc.diagnostics import AgentcError
from agentc.sim import arrivals, events, model, plan, report


def op(op_id, pool, busy, inputs=()):
    return {"id": op_id, "kind": "compute.cpu", "pool": pool, "tp": 1, "est_latency_ms": busy,
            "busy_ms": busy, "region": "", "inputs": list(inputs)}


def manifest(pools, busy=10.0, sla=None):
    return {"schema_version": "1.2", "agent": "t", "sla": sla or {},
            "cluster": {"pools": [{"name": n, "count": c} for n, c in pools.items()]},
            "ops": [op("a", "p", busy)], "edges": [], "totals": {"e2e_ms": busy}, "regions": {}, "returns": ["a"]}


def scenario(tmp_path, text):
    path = tmp_path / "events.toml"
    path.write_text(text)
    return events.read(str(path))


def test_arrivals_follow_a_load_step_and_a_ramp(tmp_path):
    """10 req/s, 40 from 100 s, then down to 10 over 100 s from 200 s: expected counts
    1000, 4000 and the ramp's integral (40 + 10) / 2 * 100 = 2500; 4 sigma (Poisson)."""
    s = scenario(tmp_path, "[[load]]\nat_s = 100\nrps = 40\n[[load]]\nat_s = 200\nrps = 10\nramp_s = 100\n")
    assert s.rate_at(10.0, 250e3) == pytest.approx(25.0)
    arr = events.arrivals(s, 10.0, np.random.default_rng(0), duration_s=300)
    t = np.array([a.t_ms for a in arr]) / 1e3
    for lo, hi, expected in ((0, 100, 1000), (100, 200, 4000), (200, 300, 2500)):
        n = int(((t >= lo) & (t < hi)).sum())
        assert abs(n - expected) < 4 * math.sqrt(expected), (lo, n)
    assert np.all(np.diff(t) >= 0)
    assert len(events.arrivals(s, 10.0, np.random.default_rng(0), requests=123)) == 123


def test_a_pool_losing_a_device_finishes_running_work_and_takes_no_more():
    """Two devices, 10 ms per request. Two requests at 0 run at once; one device is
    lost at 5, yet both finish at 10. Two requests at 12 share the one device left:
    12-22 and 22-32."""
    p = plan.from_manifest(manifest({"p": 2}, sla={"e2e_ms": 15.0}))
    res = model.simulate(p, [arrivals.Arrival(t) for t in (0.0, 0.0, 12.0, 12.0)],
                         losses=(model.Loss(5.0, "p", 1),))
    assert [r.end_ms for r in res.requests] == pytest.approx([10.0, 10.0, 22.0, 32.0])
    assert res.pools["p"].lost == [(5.0, 1)]
    # without the loss the two later requests run at once
    res0 = model.simulate(p, [arrivals.Arrival(t) for t in (0.0, 0.0, 12.0, 12.0)])
    assert [r.end_ms for r in res0.requests] == pytest.approx([10.0, 10.0, 22.0, 22.0])
    # SLA attainment per 10 ms window of arrivals: 2/2, then 1/2 (e2e 10 and 20 vs 15)
    w = report.summarize(res, window_ms=10.0)["windows"]
    assert [(x["start_s"], x["requests"], x["sla_attained"]) for x in w] == [(0.0, 2, 1.0), (0.01, 2, 0.5)]
    assert w[1]["terms"]["latency"] == {"attained": 0.5, "holds": False}
    assert w[1]["e2e_p99_ms"] == pytest.approx(19.9, abs=1e-9)


def test_the_controller_hook_can_swap_the_plan():
    """An overloaded one-device pool (10 ms each, a request every 5 ms); the hook,
    called every 100 ms, gives it three devices at its first call: later arrivals no
    longer queue, and every call is seen."""
    small, big = (plan.from_manifest(manifest({"p": n})) for n in (1, 3))
    arr = [arrivals.Arrival(5.0 * i) for i in range(100)]
    calls = []

    def decide(sim):
        calls.append(sim.env.now)
        return big if len(calls) == 1 else None

    res = model.simulate(small, arr, controller=model.Controller(100.0, decide))
    stay = model.simulate(small, arr)
    assert calls == pytest.approx([100.0 * k for k in range(1, 5)])
    assert res.requests[-1].end_ms - res.requests[-1].arrival_ms < 20.0
    assert stay.requests[-1].end_ms - stay.requests[-1].arrival_ms > 400.0


@pytest.mark.parametrize("text,line,col,message", [
    ("[[load]]\nat_s = 1\n", 1, 1, "needs 'rps'"),
    ("[[load]]\nat_s = 1\nrps = -2\n", 3, 1, "'rps' must be positive"),
    ("[[load]]\nat_s = 1\nrps = 2\nspeed = 3\n", 4, 1, "unknown key 'speed'"),
    ("[[load]]\nat_s = 5\nrps = 2\n[[load]]\nat_s = 1\nrps = 3\n", 5, 1, "time order"),
    ("[[loss]]\nat_s = 1\npool = \"p\"\ndevices = 1.5\n", 4, 1, "must be an integer"),
    ("[[loss]]\nat_s = 1\npool = \"gpu\"\ndevices = 1\n", 3, 1, "no pool 'gpu'"),
    ("[[loss]]\nat_s = 1\npool = \"p\"\ndevices = 2\n", 3, 1, "fewer than the 1 its widest op needs"),
    ("[storm]\nat_s = 1\n", 1, 1, "unknown entry 'storm'"),
    ("[[load]\n", 1, None, ""),
])
def test_bad_events_files_are_located_errors(tmp_path, text, line, col, message):
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps(manifest({"p": 2})))
    ev = tmp_path / "ev.toml"
    ev.write_text(text)
    r = CliRunner().invoke(cli, ["simulate", str(m), "--load", "10", "--requests", "20", "--events", str(ev)],
                           catch_exceptions=False)
    assert r.exit_code == 1, r.output
    prefix = f"{ev}:{line}:" + (f"{col}:" if col else "")
    assert prefix in r.output and "error:" in r.output and message in r.output, r.output
    assert "Traceback" not in r.output


def test_events_on_the_command_line_give_windows_in_table_and_json(tmp_path):
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps(manifest({"p": 2}, busy=50.0, sla={"e2e_ms": 100.0})))
    ev = tmp_path / "ev.toml"
    ev.write_text("[[load]]\nat_s = 20\nrps = 60\n[[loss]]\nat_s = 30\npool = \"p\"\ndevices = 1\n")
    args = ["simulate", str(m), "--load", "10", "--duration", "40", "--events", str(ev), "--window", "10",
            "--warmup", "0"]
    r = CliRunner().invoke(cli, args + ["--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["window_s"] == 10 and [w["start_s"] for w in d["windows"]] == [0, 10, 20, 30]
    assert d["events"]["loss"] == [{"at_s": 30.0, "pool": "p", "devices": 1}]
    # 10 req/s on two 50 ms devices meets 100 ms; 60 req/s on one device cannot
    assert d["windows"][0]["sla_attained"] > 0.9 and d["windows"][3]["sla_attained"] < 0.2
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0 and "SLA by window of 10 s" in r.output


def test_read_returns_losses_in_time_order(tmp_path):
    s = scenario(tmp_path, "[[loss]]\nat_s = 9\npool = \"p\"\ndevices = 1\n[[loss]]\nat_s = 2\npool = \"q\"\n"
                           "devices = 3\n")
    assert [(x.t_ms, x.pool, x.devices) for x in s.losses] == [(2000.0, "q", 3), (9000.0, "p", 1)]
    with pytest.raises(AgentcError):
        events.check(s, plan.from_manifest(manifest({"p": 2})))


def test_window_alone_and_a_bad_window(tmp_path):
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps(manifest({"p": 2}, sla={"e2e_ms": 100.0})))
    r = CliRunner().invoke(cli, ["simulate", str(m), "--load", "10", "--duration", "20", "--window", "5",
                                 "--warmup", "0", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert [w["start_s"] for w in d["windows"]] == [0, 5, 10, 15] and "events" not in d
    assert sum(w["requests"] for w in d["windows"]) == d["requests"]
    r = CliRunner().invoke(cli, ["simulate", str(m), "--load", "10", "--window", "-1"], catch_exceptions=False)
    assert r.exit_code == 1 and "--window must be positive" in r.output
