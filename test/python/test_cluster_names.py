"""Names in a cluster file are data, never paths (issue 15, item 1).

A pool name becomes an output directory and a symbol, so a cluster file someone hands
you could once write outside `-o` (`name = "../x"`). Every name now follows one rule;
each case below must exit 1 with `file:line:col: error:` at the entry, naming the rule,
and write nothing anywhere. The expected messages are written out by hand here, not
taken from the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from agentc.catalog import load_catalog, load_cluster
from agentc.cli import cli
from agentc.diagnostics import CatalogError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOICE = os.path.join(ROOT, "examples", "voice_agent.agent")
RULE = "names must be an ASCII letter, then ASCII letters, digits, '_' or '-'; at most 64 characters"


def cluster_text(pool_name: str, device: str = "epyc-9654", extra: str = "") -> str:
    # json.dumps writes a valid TOML basic string for every name used here (\u escapes)
    return (f'name = "evil"\n'
            f'[[pool]]\nname = "cpu"\ndevice = "epyc-9654"\ncount = 2\n'
            f'[[pool]]\nname = {json.dumps(pool_name)}\ndevice = "{device}"\ncount = 1\n' + extra)


def snapshot(root) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def invoke(args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args, prog_name="agentc")
    finally:
        os.chdir(old)


CASES = [
    ("..", "contains '..'"),
    ("../../etc", "contains a path separator"),
    ("ABS", "contains a path separator"),  # replaced by an absolute path under tmp_path
    ("gpu\x00x", "contains a NUL character"),
    ("gpu\u03c0", "contains non-ASCII characters"),
    ("manifest.json", "is reserved (agentc writes a file of that name)"),
    (".agentc-output", "is reserved (agentc writes a file of that name)"),
    (".hidden", "starts with '.' (hidden and reserved names)"),
    ("x" * 300, "is 300 characters long"),
    ("", "is empty"),
    ("9lives", "does not start with a letter"),
    ("gpu pool", "contains ' '"),
    ("gpu.b", "contains '.'"),
    ("a\\b", "contains a path separator"),
]


@pytest.mark.parametrize("name,problem", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_pool_name_is_located_and_nothing_is_written(tmp_path, name, problem):
    work = tmp_path / "work"
    work.mkdir()
    if name == "ABS":
        name = str(tmp_path / "abs" / "pool")
    cluster = work / "evil.toml"
    cluster.write_text(cluster_text(name), encoding="utf-8")
    before = snapshot(tmp_path)
    result = invoke(["compile", VOICE, "--cluster", str(cluster), "-o", "out"], work)
    assert result.exit_code == 1, result.output
    shown = repr(name if len(name) <= 40 else name[:40] + "...")
    # line 7: the second pool's name (line 1: cluster name; 2-5: the first pool; 6: its header)
    assert f"{cluster}:7:1: error: pool name {shown} {problem}: {RULE}" in result.stderr, result.stderr
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "abs").exists() and not (tmp_path / "etc").exists()


def test_the_issue_reproducer_exits_1_and_writes_nothing_outside(tmp_path):
    """The exact command of the report, as a separate process: a full compile (no --emit)."""
    work = tmp_path / "work"
    work.mkdir()
    cluster = work / "evil.toml"
    with open(os.path.join(ROOT, "agentc", "catalog", "default_cluster.toml"), encoding="utf-8") as f:
        cluster.write_text(f.read().replace('name = "epyc"', 'name = "../x"'), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "agentc", "compile", VOICE, "--cluster", "evil.toml", "-o", "out"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "evil.toml:20:1: error: pool name '../x' contains a path separator" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["work"] and sorted(os.listdir(work)) == ["evil.toml"]


def test_names_differing_only_in_case_are_one_directory(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(cluster_text("CPU"), encoding="utf-8")
    with pytest.raises(CatalogError, match="pool names 'cpu' and 'CPU' differ only in case") as e:
        load_cluster(path, load_catalog())
    assert (e.value.loc.line, e.value.loc.col) == (7, 1)


def test_device_class_names_follow_the_rule_in_cluster_and_catalog_files(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(cluster_text("gpus", device="my/gpu",
                                 extra='[device."my/gpu"]\nbase = "H100"\n'), encoding="utf-8")
    result = invoke(["plan", VOICE, "--cluster", str(path)], tmp_path)
    assert result.exit_code == 1
    assert f"{path}:10:" in result.stderr and "device name 'my/gpu' contains a path separator" in result.stderr
    cat = tmp_path / "cat.toml"
    cat.write_text('[model."llama\u03c0"]\nkind = "decoder"\n', encoding="utf-8")
    result = invoke(["plan", VOICE, "--catalog", str(cat)], tmp_path)
    assert result.exit_code == 1
    assert f"{cat}:1:1: error: model name 'llama\u03c0' contains non-ASCII characters" in result.stderr


def test_an_explicit_cluster_name_follows_the_rule(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(cluster_text("gpus").replace('name = "evil"', 'name = "../evil"'), encoding="utf-8")
    with pytest.raises(CatalogError, match="cluster name '../evil' contains a path separator") as e:
        load_cluster(path, load_catalog())
    assert (e.value.loc.line, e.value.loc.col) == (1, 1)


def test_good_names_pass(tmp_path):
    path = tmp_path / "c.toml"
    name = "G" + "pu_-9" * 12 + "abc"  # 64 characters
    path.write_text(cluster_text(name), encoding="utf-8")
    assert load_cluster(path, load_catalog()).pools[1].name == name
    path.write_text(cluster_text(name + "d"), encoding="utf-8")
    with pytest.raises(CatalogError, match="is 65 characters long"):
        load_cluster(path, load_catalog())
