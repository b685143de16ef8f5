"""`--ray` with accelerator pools (agentc/deploy/ray_run.py: pool_groups, pool_spec,
check_resources). No GPU here: the placement groups' bundles and the actors' options are
checked as specs, against the plan read from the IR and against Ray's own rule that an
actor in a placement group must fit its bundle (Ray's resources_from_ray_options turns
the options into the demand it schedules); a GPU plan on this GPU-less local Ray is
refused in words at once, placing nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import ray.util.accelerators.accelerators as ray_accelerators
from agentc.cli import cli

pytestmark = pytest.mark.xdist_group("ray")

PROGRAM = """\
model big = llama3-70b
agent ask(q: text) -> json {
  load 12 rps
  a = llm(big, q, in=512, out=64)
  r = tool tag(a, latency=2ms, payload=1KB)
  return r
}
"""

# One pool per cluster, so the whole plan lands there (the planner has no other choice).
CLUSTERS = {
    "h100": ("H100", 16),
    "mi300": ("MI300x", 16),
    "gaudi": ("Gaudi3", 16),
}

# Ray's accelerator labels and device resources for these classes, written out here on
# purpose (ray.util.accelerators; Gaudi is an HPU to Ray).
LABEL = {"H100": "H100", "MI300x": "AMD-Instinct-MI300X-OAM", "Gaudi3": "Intel-GAUDI"}
RESOURCE = {"H100": "GPU", "MI300x": "GPU", "Gaudi3": "HPU"}
RAY_LABELS = {v for k, v in vars(ray_accelerators).items() if k[:1].isupper() and isinstance(v, str)}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from agentc.deploy.ray_run import Program, compile_placed

    d = tmp_path_factory.mktemp("gpu")
    (d / "ask.agent").write_text(PROGRAM)
    out = {}
    for pool, (device, count) in CLUSTERS.items():
        (d / f"{pool}.toml").write_text(f'name = "{pool}"\n\n[[pool]]\nname = "{pool}"\ndevice = "{device}"\n'
                                        f"count = {count}\nnodes = 1\n")
        prog = Program.make(str(d / "ask.agent"), str(d / f"{pool}.toml"))
        out[pool] = (prog, compile_placed(prog))
    out["dir"] = d
    return out


def _planned(c):
    from agentc.passes._ir import get, walk
    from agentc.passes._plan_ctx import entry_graph

    return [(get(op, "pool"), int(get(op, "tp")), int(get(op, "replicas")))
            for op in walk(entry_graph(c.module)) if get(op, "pool")]


@pytest.mark.parametrize("pool", list(CLUSTERS))
@pytest.mark.parametrize("pinned", [True, False])
def test_accelerator_pools_hold_whole_devices_with_rays_label(pool, pinned, compiled):
    from ray._common.utils import resources_from_ray_options

    from agentc.deploy.ray_run import pool_groups, pool_spec

    _, c = compiled[pool]
    device, count = CLUSTERS[pool]
    planned = _planned(c)
    tp = max(t for _, t, _ in planned)
    for cap in (1, 2, 16):
        (g,) = pool_groups(c, cap)
        actors = max(1, min(max(r for *_, r in planned), cap, count // tp))
        assert (g.tp, g.actors, g.devices) == (tp, actors, actors)
        spec = pool_spec(g, pinned)
        bundle = {RESOURCE[device]: tp, f"accelerator_type:{LABEL[device]}": 0.001}
        if pinned:
            bundle[f"agentc_pool_{pool}"] = tp
        assert spec.bundles == [bundle] * actors
        assert spec.bundle_of == list(range(actors))     # an actor per bundle
        assert spec.actor["accelerator_type"] == LABEL[device] in RAY_LABELS
        assert spec.actor.get("num_gpus") == (tp if RESOURCE[device] == "GPU" else None)
        # Ray schedules an actor in a bundle only if its demand fits there: it must
        # fit exactly (no CPU asked: the bundle holds none).
        demand = {k: v for k, v in resources_from_ray_options(spec.actor).items() if v}
        assert demand == bundle


def test_the_plans_above_exercise_tp_and_replicas(compiled):
    """The specs above are checked with tp > 1 (the 70B model on H100 and Gaudi3) and
    with several actors (MI300x at this load), not only one device of one actor."""
    from agentc.deploy.ray_run import pool_groups

    groups = [pool_groups(compiled[p][1], 16)[0] for p in CLUSTERS]
    assert max(g.tp for g in groups) > 1 and max(g.actors for g in groups) > 1


def test_cpu_pools_keep_their_bundles():
    """A CPU pool's spec is what `--ray` asked before: pool units (or CPU shares) per
    device, divided among the actors sharing a bundle."""
    from ray._common.utils import resources_from_ray_options

    from agentc.deploy.plan import device_of
    from agentc.deploy.ray_run import PoolGroup, pool_spec

    g = PoolGroup("xeon", 2, 4, {"a": 4}, device_of("xeon", "xeon-8480", "llvm-cpu"))
    spec = pool_spec(g, pinned=True)
    assert spec.bundles == [{"agentc_pool_xeon": 1.0}] * 2 and spec.bundle_of == [0, 1, 0, 1]
    assert {k: v for k, v in resources_from_ray_options(spec.actor).items() if v} == {"agentc_pool_xeon": 0.5}
    spec = pool_spec(g, pinned=False, cpu_share=0.5)
    assert spec.bundles == [{"CPU": 0.5}] * 2
    assert resources_from_ray_options(spec.actor)["CPU"] == 0.25


def test_a_cluster_short_of_devices_is_refused_in_words(compiled):
    from agentc.deploy.ray_run import check_resources, pool_groups, pool_spec
    from agentc.diagnostics import UsageError

    (g,) = pool_groups(compiled["h100"][1], 2)
    specs, groups = {"h100": pool_spec(g, True)}, {"h100": g}
    gpus = g.actors * g.tp
    enough = {"CPU": 8, "GPU": gpus, "agentc_pool_h100": gpus, "accelerator_type:H100": 1}
    check_resources(specs, groups, enough)
    with pytest.raises(UsageError) as err:
        check_resources(specs, groups, {"CPU": 2, "agentc_pool_h100": gpus})
    msg = err.value.message
    actors = f"{g.actors} actor" + ("s" if g.actors > 1 else "")
    assert f"GPU: h100 needs {gpus} ({actors} x tp {g.tp} H100); the Ray cluster has 0" in msg
    assert "pool h100 needs H100 devices, and no node of the Ray cluster has one" in msg
    with pytest.raises(UsageError, match="needs H100 devices"):   # GPUs of another kind
        check_resources(specs, groups, dict(enough, **{"accelerator_type:H100": 0, "accelerator_type:A100": 1}))


def test_a_gpu_plan_on_a_machine_without_gpus_fails_at_once(compiled, ray_local):
    """On this GPU-less local Ray, `agentc run --ray` of a GPU plan is a usage error (exit
    1) naming what is missing, instead of a placement group waiting forever; no
    placement group is left behind."""
    from ray.util import placement_group_table

    before = len(placement_group_table())
    d = compiled["dir"]
    res = CliRunner().invoke(cli, ["run", str(d / "ask.agent"), "--cluster", str(d / "h100.toml"), "--input", "q",
                                   "--ray"], prog_name="agentc")
    assert res.exit_code == 1, res.output
    assert "error: the Ray cluster cannot hold the plan's pools: GPU: h100 needs" in res.output
    assert "the Ray cluster has 0" in res.output and "needs H100 devices" in res.output
    assert len(placement_group_table()) == before
