"""`--time-limit`: the MILP's search time is the user's to set (the "no placement found
within the time limit" error tells them to), and it reaches the solver."""

import subprocess
import sys

from agentc import pipeline
from agentc.state import Options


def test_time_limit_reaches_the_planners_problem():
    c = pipeline.compile_file("examples/table3.agent",
                              Options(emit="placed", cluster="examples/clusters/table3.toml", time_limit_s=3.5))
    assert pipeline.placement(c).problem.time_limit_s == 3.5
    c = pipeline.compile_file("examples/table3.agent", Options(emit="placed", cluster="examples/clusters/table3.toml"))
    assert pipeline.placement(c).problem.time_limit_s == 10.0


def test_time_limit_is_a_flag_of_every_planning_command_and_checked():
    for cmd in ("compile", "plan", "explain", "check"):
        r = subprocess.run([sys.executable, "-m", "agentc", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "--time-limit" in r.stdout, cmd
    r = subprocess.run([sys.executable, "-m", "agentc", "plan", "examples/table3.agent", "--cluster",
                        "examples/clusters/table3.toml", "--time-limit", "0"], capture_output=True, text=True)
    assert r.returncode == 1 and "--time-limit" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "agentc", "plan", "examples/table3.agent", "--cluster",
                        "examples/clusters/table3.toml", "--time-limit", "30"], capture_output=True, text=True)
    assert r.returncode == 0 and "120" in r.stdout
