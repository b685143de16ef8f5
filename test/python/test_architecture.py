"""The layout's promises: no import cycles (lazy imports inside functions count too), the
pipeline is one list that every consumer reads, and each pass file is registered."""

from __future__ import annotations

import ast
import graphlib
import os

import pytest

from agentc import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# source folder -> the package it installs as (pyproject's package-dir)
PACKAGES = {"agentc": "agentc", "dialects": "agentc.dialects", "passes": "agentc.passes",
            "targets": "agentc.targets"}


def _modules() -> dict[str, str]:
    mods = {}
    for folder, pkg in PACKAGES.items():
        base = os.path.join(ROOT, folder)
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), base)[:-3].replace(os.sep, ".")
                    rel = rel[:-len("__init__")].rstrip(".") if rel.endswith("__init__") else rel
                    mods[f"{pkg}.{rel}" if rel else pkg] = os.path.join(dirpath, f)
    return mods


def _imports(name: str, path: str, known: set[str]) -> set[str]:
    """Modules of ours that `name` imports anywhere in its body. `from pkg import sub`
    counts as importing `pkg.sub` alone; a module's own ancestors are not edges (Python
    runs a package's __init__ before its modules, which is no cycle), and neither are
    imports under `if TYPE_CHECKING:` (annotations only, never run)."""
    is_pkg = path.endswith("__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    typing_only = {id(n) for top in ast.walk(tree)
                   if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test)
                   for stmt in top.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            out.update(subs if subs else [target])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in known and m != name and not name.startswith(m + ".")}


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(m, p, set(mods)) for m, p in mods.items()}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")
    assert set(order) == set(mods) and len(mods) > 50


def test_cycle_finder_sees_a_cycle(tmp_path):
    """The check above can fail: two modules importing each other are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from agentc import b\n")
    b.write_text("from agentc import a\n")
    known = {"agentc.a", "agentc.b"}
    graph = {"agentc.a": _imports("agentc.a", str(a), known), "agentc.b": _imports("agentc.b", str(b), known)}
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


def test_stages_command_prints_the_pipeline_list(tmp_path):
    from click.testing import CliRunner

    from agentc.cli import cli

    r = CliRunner().invoke(cli, ["stages"])
    assert r.exit_code == 0
    assert [line.split()[0] for line in r.output.splitlines()] == pipeline.stage_names()
    assert pipeline.stage_names()[-1] == "manifest"


def test_every_stage_pass_is_registered():
    from agentc.passes import registry

    named = [p for s in pipeline.STAGES for p in s.passes]
    assert named and set(named) <= set(registry())


def test_each_target_maps_only_pipeline_emit_points():
    from agentc import targets

    for name in targets.TARGETS:
        t = targets.get(name)
        stages: dict = {}
        t.add_stages(stages, t.parse_options())
        assert set(t.EMIT_POINTS) <= set(pipeline.EMIT_POINTS), name
        assert set(t.EMIT_POINTS.values()) <= set(stages), name


def test_agentc_opt_records_the_stage_its_passes_reach():
    assert pipeline.stage_after_passes("costed", ["place"]) == "placed"
    assert pipeline.stage_after_passes("agent", ["inline-agents", "decompose-llm"]) == "agent"
    assert pipeline.stage_after_passes("agent", ["inline-agents", "decompose-llm", "decompose-tools",
                                                 "decompose-ops"]) == "decomposed"
    assert pipeline.stage_after_passes("placed", ["verify-agent"]) == "placed"
