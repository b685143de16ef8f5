"""The command-line contract: exit 0 on success, 1 with a located diagnostic and no
traceback on a user error, 2 with 'internal compiler error' and a reproduce hint on a
compiler bug; --version and --help (with an example) on every command; a failed compile
writes nothing and leaves a previous output directory as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from agentc import __version__
from agentc.cli import cli
from agentc.cli.opt import opt_cmd
from helpers import tree_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOICE = os.path.join(REPO, "examples", "voice_agent.agent")
BAD = "agent a(q: audio) -> text {\n  y = llm(llama3-8b, q, in=8, out=8)\n  return y\n}\n"


def run_agentc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "agentc", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "bad.agent"
    path.write_text(BAD)
    return path


def test_success_exits_0_and_prints_ir():
    proc = run_agentc("compile", VOICE, "--emit", "agent")
    assert proc.returncode == 0, proc.stderr
    assert '"agent.graph"' in proc.stdout
    assert proc.stderr == ""


def test_user_error_exits_1_with_located_diagnostic_and_no_traceback(bad_file, tmp_path):
    out = tmp_path / "out"
    proc = run_agentc("compile", str(bad_file), "-o", str(out))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == f"{bad_file}:2:22: error: llm cannot take audio; it accepts text, tokens, documents, json"
    assert lines[1:3] == ["  y = llm(llama3-8b, q, in=8, out=8)", " " * 21 + "^"]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not out.exists()


def test_missing_input_is_a_user_error(tmp_path):
    proc = run_agentc("compile", str(tmp_path / "nope.agent"))
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_internal_error_exits_2_with_reproduce_hint(monkeypatch):
    from agentc.frontend import lower

    def boom(*_args, **_kwargs):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(lower, "lower_program", boom)
    monkeypatch.delenv("AGENTC_TRACEBACK", raising=False)
    result = CliRunner().invoke(cli, ["compile", VOICE, "--emit", "agent"], prog_name="agentc")
    assert result.exit_code == 2
    err = result.stderr
    assert "internal compiler error: RuntimeError: synthetic failure" in err
    assert "reproduce with:" in err
    assert "Traceback" not in err


def test_internal_error_traceback_on_request(monkeypatch):
    from agentc.frontend import lower

    monkeypatch.setattr(lower, "lower_program", lambda *a, **k: 1 / 0)
    monkeypatch.setenv("AGENTC_TRACEBACK", "1")
    result = CliRunner().invoke(cli, ["compile", VOICE, "--emit", "agent"], prog_name="agentc")
    assert result.exit_code == 2
    assert "ZeroDivisionError" in result.stderr and "Traceback" in result.stderr


def test_version():
    for args in (["-m", "agentc", "--version"], ["-m", "agentc.opt", "--version"]):
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0
        assert __version__ in proc.stdout


COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_of_every_command_shows_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="agentc")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_help_of_top_level_and_agentc_opt_show_examples():
    for command in (cli, opt_cmd):
        result = CliRunner().invoke(command, ["--help"])
        assert result.exit_code == 0
        assert "Example" in result.output


def test_stages_lists_agent_first():
    result = CliRunner().invoke(cli, ["stages"], prog_name="agentc")
    assert result.exit_code == 0
    assert result.output.split()[0] == "agent"


def test_failed_compile_leaves_previous_output_directory_untouched(bad_file, tmp_path):
    out = tmp_path / "out"
    first = run_agentc("compile", VOICE, "-o", str(out), "--targets", "cpu", "-q")
    assert first.returncode == 0, first.stderr
    before = tree_bytes(out)
    assert before, "the first compile wrote nothing"
    failed = run_agentc("compile", str(bad_file), "-o", str(out), "--targets", "cpu", "-q")
    assert failed.returncode == 1
    assert tree_bytes(out) == before
    assert sorted(os.listdir(tmp_path)) == ["bad.agent", "out"], "no temporary directories left behind"


def test_failed_emit_leaves_previous_mlir_untouched(bad_file, tmp_path):
    target = tmp_path / "x.mlir"
    target.write_text("previous\n")
    proc = run_agentc("compile", str(bad_file), "--emit", "agent", "-o", str(target))
    assert proc.returncode == 1
    assert target.read_text() == "previous\n"


def test_agentc_opt_user_error_exits_1(tmp_path):
    path = tmp_path / "bad.mlir"
    path.write_text('module {\n  "agent.nope"() : () -> ()\n}\n')
    proc = subprocess.run([sys.executable, "-m", "agentc.opt", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{path}:2:3: error: ")
    assert "Traceback" not in proc.stderr


EXAMPLES = sorted(f for f in os.listdir(os.path.join(REPO, "examples")) if f.endswith(".agent"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_explain_and_pareto_on_every_example(example):
    """`agentc explain` and `agentc plan --pareto` on each shipped example (with its own
    cluster where it has one, clusters/<stem>.toml): the explanation names a pool for
    every op, no feasible runner-up is cheaper, critical-path ops have no slack; the
    frontier is strictly monotone and nothing on it beats the plan at the plan's latency."""
    path = os.path.join(REPO, "examples", example)
    cluster = os.path.join(REPO, "examples", "clusters", example.replace(".agent", ".toml"))
    extra = ["--cluster", cluster] if os.path.isfile(cluster) else []
    ex = run_agentc("explain", path, *extra, "--json")
    assert ex.returncode == 0, ex.stderr
    plan = json.loads(ex.stdout)
    assert plan["ops"] and all(o["pool"] for o in plan["ops"])
    for o in plan["ops"]:
        r = o["runner_up"]
        if r is not None and r["feasible"]:
            assert r["delta_cost"] >= -1e-9 * max(1.0, plan["cost"]), o["op"]
        if o["op"] in plan["critical_path"]:
            assert o["slack_ms"] == pytest.approx(0.0, abs=1e-6)
    pa = run_agentc("plan", path, *extra, "--pareto", "--json")
    assert pa.returncode == 0, pa.stderr
    front = json.loads(pa.stdout)
    assert front
    for a, b in zip(front, front[1:]):
        assert a["e2e_ms"] < b["e2e_ms"] and a["cost"] > b["cost"]
    at_plan = [p["cost"] for p in front if p["e2e_ms"] <= plan["e2e_ms"] * (1 + 1e-9)]
    assert at_plan and min(at_plan) >= plan["cost"] * (1 - 1e-4)  # the MILP's relative gap


def test_devices_json_prices_each_device_three_ways(tmp_path):
    """Hand-computed: 8%/12 over 48 months is a payment factor of 0.0244129 per $,
    spread over 730 hours; TCO adds TDP x $0.40/kWh. A cluster priced by capex prices
    its pools that way."""
    import json
    proc = run_agentc("devices", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    b200 = next(d for d in data["devices"] if d["name"] == "B200")
    assert b200["capex_usd_per_hr"] == pytest.approx(40000 * 0.0244129 / 730, rel=1e-5)
    assert b200["tco_usd_per_hr"] == pytest.approx(b200["capex_usd_per_hr"] + 1000 / 1000 * 0.40, rel=1e-6)
    assert b200["given_usd_per_hr"] == 0.83
    pool = next(p for p in data["cluster"]["pools"] if p["device"] == "B200")
    assert data["cluster"]["pricing"] == "tco" and pool["usd_per_hr"] == b200["tco_usd_per_hr"]
    cluster = tmp_path / "c.toml"
    cluster.write_text('name = "c"\npricing = "capex"\n[[pool]]\nname = "b"\ndevice = "B200"\ncount = 2\n')
    data = json.loads(run_agentc("devices", "--cluster", str(cluster), "--json").stdout)
    assert data["cluster"]["pricing"] == "capex"
    assert data["cluster"]["pools"][0]["usd_per_hr"] == b200["capex_usd_per_hr"]


def test_an_agent_that_passes_its_input_through_compiles_to_an_empty_plan(tmp_path):
    import json
    src = tmp_path / "echo.agent"
    src.write_text("agent echo(q: text) -> text {\n  return q\n}\n")
    proc = run_agentc("compile", str(src), "-o", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["ops"] == [] and manifest["totals"]["devices"] == {}
    assert manifest["totals"]["e2e_ms"] == 0 and manifest["totals"]["usd_per_request"] == 0


def test_plan_table_with_o_is_refused_before_planning(tmp_path):
    proc = run_agentc("plan", VOICE, "-o", str(tmp_path / "plan.txt"))
    assert proc.returncode == 1 and "-o needs --json or --format" in proc.stderr
    assert not (tmp_path / "plan.txt").exists()
    proc = run_agentc("plan", VOICE, "--sweep", "prefill-decode-pairs")
    assert proc.returncode == 1 and "takes no SOURCE" in proc.stderr


def test_plan_table_shows_each_ops_batch_and_queueing_wait():
    """The table's batch and queue ms are the manifest's (decode's chosen batch; the
    M/G/c wait inside each op's latency), row by row. On react_tools, whose prefills wait
    at p99 (rag's four B200 no longer wait at its p95)."""
    rag = VOICE.replace("voice_agent", "react_tools")
    doc = json.loads(run_agentc("plan", rag, "--json").stdout)
    proc = subprocess.run([sys.executable, "-m", "agentc", "plan", rag], capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="250"))
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "replicas" in line)
    cols = [c.strip() for c in header.strip("┃").split("┃")]
    assert cols[4:8] == ["replicas", "batch", "queue ms", "latency ms"]
    rows = {r[0]: r for r in ([c.strip() for c in line.strip("│").split("│")]
                              for line in proc.stdout.splitlines() if line.startswith("│"))}
    assert any(o["queue_wait_ms"] > 0 for o in doc["ops"]) and any(o["batch"] > 1 for o in doc["ops"])
    for o in doc["ops"]:
        assert int(rows[o["id"]][5]) == o["batch"]
        assert float(rows[o["id"]][6]) == pytest.approx(o["queue_wait_ms"], rel=1e-3)


def test_unknown_cpu_name_is_a_user_error_not_an_llvm_abort(tmp_path):
    proc = run_agentc("compile", VOICE, "-o", str(tmp_path / "out"), "--targets", "cpu", "--cpu", "skylake-avx51")
    assert proc.returncode == 1, proc.stderr
    assert "LLVM knows no CPU 'skylake-avx51'" in proc.stderr and "did you mean skylake-avx512" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_absurdly_deep_nesting_is_a_located_error(tmp_path):
    src = tmp_path / "deep.agent"
    src.write_text("agent a(q: text) -> text {\n" + "  loop max 2 {\n" * 1000 + "  }\n" * 1000 + "  return q\n}\n")
    proc = run_agentc("plan", str(src))
    assert proc.returncode == 1, proc.stderr
    assert "deep.agent:1:1: error: 'deep.agent' nests blocks or lists too deeply" in proc.stderr.replace(str(tmp_path) + "/", "")


def test_non_utf8_source_is_located_at_the_bad_byte(tmp_path):
    src = tmp_path / "latin1.agent"
    src.write_bytes(b"agent a(q: text) -> text {\n  // caf\xe9\n  return q\n}\n")
    proc = run_agentc("plan", str(src))
    assert proc.returncode == 1
    assert f"{src}:2:9: error: '{src}' is not UTF-8 text: byte 0xe9" in proc.stderr


def test_unknown_cpu_for_a_triple_llc_cannot_list_is_probed(tmp_path):
    """The wheel's llc has no RISC-V target but llvmlite does: the name is probed in a
    child process, since LLVM aborts on it in-process."""
    out = tmp_path / "out"
    proc = run_agentc("compile", VOICE, "-o", str(out), "--targets", "cpu", "--cpu", "bogus",
                      "--cpu-triple", "riscv64-unknown-linux-gnu")
    assert proc.returncode == 1 and "LLVM knows no CPU 'bogus' for triple riscv64-unknown-linux-gnu" in proc.stderr
    assert not out.exists()


def test_calibrate_to_an_unwritable_path_is_a_user_error(tmp_path):
    proc = run_agentc("calibrate", "-o", str(tmp_path / "nodir" / "p.toml"))
    assert proc.returncode == 1 and f"cannot write '{tmp_path}/nodir/p.toml'" in proc.stderr


@pytest.mark.parametrize("args", [["compile", "--no-such-flag", "x.agent"], ["plan", "x.agent", "--points", "1"],
                                  ["nope"], ["compile"]])
def test_usage_errors_exit_1_not_2(args):
    """Exit 2 is reserved for compiler bugs; click's usage errors are the user's."""
    proc = subprocess.run([sys.executable, "-m", "agentc", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Error:" in proc.stderr and "Traceback" not in proc.stderr


def test_agentc_opt_lists_passes_without_a_file():
    proc = subprocess.run([sys.executable, "-m", "agentc.opt", "--list-passes"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    from agentc.passes import registry

    assert [l for l in lines if not l.startswith(" ")] == sorted(registry())
    # whole descriptions, not a first line cut mid-sentence
    assert any("fuses" in l or "." in l for l in lines if l.startswith("    "))
