"""What code generation reads from files at run time is shipped with the package: the
CPU target's transform scripts (targets/cpu/*.mlir) and the runtime ABI header. Every
script fragment fills in to a module MLIR parses, none is unused, and every runtime
function the compiler calls is declared in the header a runtime implements."""

from __future__ import annotations

import fnmatch
import importlib.resources
import itertools
import os
import re
import tomllib

import pytest
from mlir import ir

from agentc.codegen import abi
from agentc.targets.cpu import schedule, scripts

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.fixture(scope="module")
def setuptools_config() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def _shipped(config: dict, package: str, name: str) -> bool:
    return package in config["packages"] and any(
        fnmatch.fnmatch(name, pattern) for pattern in config["package-data"].get(package, []))


def test_every_transform_script_is_package_data(setuptools_config):
    package = importlib.resources.files("agentc.targets.cpu")
    present = sorted(p.name for p in package.iterdir() if p.name.endswith(".mlir"))
    assert present == sorted(scripts.SCRIPT_FILES)            # no file the code does not load
    for name in scripts.SCRIPT_FILES:
        assert package.joinpath(name).is_file()
        assert _shipped(setuptools_config, "agentc.targets.cpu", name), name
        assert {"head"} <= set(scripts.fragments(name))


def _all_schedules():
    """One schedule of every shape `matmul_schedule` makes: packed or not (B transposed
    or not), split over m or n or not split, K blocked or not, each peel (a packed
    matmul peels m only: its panels are whole), and B packed at load (prepacked)."""
    for pack_b, b_t, split, k_block, peel in itertools.product(
            (False, True), (False, True), ("", "m", "n"), (0, 64), ("", "m", "n", "mn")):
        if (b_t and not pack_b) or (pack_b and "n" in peel):
            continue
        yield schedule.MatmulSchedule((6, 16, 1), k_block or (128 if pack_b else 0), split,
                                      2 if split else 1, pack_b, peel, b_t)
    # weights packed once at load (prepacked): whole panels, split over m or n or not
    for split, peel in itertools.product(("", "m", "n"), ("", "m")):
        yield schedule.MatmulSchedule((6, 16, 1), 128, split, 2 if split else 1, True, peel, prepacked=True)


def test_every_fragment_is_used_and_fills_in_to_a_valid_script(monkeypatch):
    used = set()
    fill = scripts._fill

    def recording(file, name, **params):
        used.add((file, name))
        return fill(file, name, **params)
    monkeypatch.setattr(scripts, "_fill", recording)
    matmul = scripts.transform_script(list(_all_schedules()))
    batch = scripts.batch_script([((1, 0, 1, 0, 0), False), ((1, 1, 0, 0, 0), False),
                                  ((0, 1, 1, 0, 0), True)])
    elementwise = scripts.elementwise_script([(1, 64), (1, 1, 0), (1, 1, 1, 0)])
    for text in (matmul, batch, elementwise):
        assert "${" not in text
        with ir.Context():
            ir.Module.parse(text)          # every parameter filled with something MLIR reads
    defined = {(f, n) for f in scripts.SCRIPT_FILES for n in scripts.fragments(f)}
    assert used == defined


def test_fragments_drop_comments_and_keep_the_script_lines():
    head = scripts.fragments("matmul.mlir")["head"].substitute()
    assert head == ("\nmodule attributes {transform.with_named_sequence} {\n"
                    "  transform.named_sequence @__transform_main(%root: !transform.any_op "
                    "{transform.readonly}) {\n")
    assert all("//" not in t.template for f in scripts.SCRIPT_FILES for t in scripts.fragments(f).values())


def test_runtime_abi_header_is_shipped_and_declares_every_runtime_call(setuptools_config):
    assert _shipped(setuptools_config, "agentc", abi.RUNTIME_HEADER)
    header = abi.runtime_header()
    declared = set(re.findall(r"AGENTC_ABI_FN\((\w+)\);", header))
    declared |= set(re.findall(r"^\S.*?\b(agentc_\w+)\(", header, re.MULTILINE))
    called = set(abi.ABI.values()) | {abi.EMBED_ROWS, abi.DECIDE} | {re.search(r"@(\w+)\(", d).group(1)
                                                         for d in abi.RUNTIME_DECLS}
    assert called <= declared, called - declared
    # the ops' runtime calls and embed.encode's table lookups (lower-host)
    assert set(re.findall(r"AGENTC_ABI_FN\((\w+)\);", header)) == set(abi.ABI.values()) | {abi.EMBED_ROWS}
