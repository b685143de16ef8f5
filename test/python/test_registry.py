"""The pass registry matches the files: every passes/NAME.py (not starting with `_`) is
registered under its own NAME, has a docstring and run(), and has lit tests under
test/lit/passes/<NAME>/."""

from __future__ import annotations

import glob
import importlib
import os

import pytest

from agentc.passes import registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASS_FILES = sorted(os.path.splitext(os.path.basename(p))[0]
                    for p in glob.glob(os.path.join(REPO, "passes", "*.py"))
                    if not os.path.basename(p).startswith("_"))


def test_there_are_passes():
    assert "verify_agent" in PASS_FILES


@pytest.mark.parametrize("stem", PASS_FILES)
def test_pass_file_is_registered_under_its_name(stem):
    mod = importlib.import_module(f"agentc.passes.{stem}")
    assert isinstance(mod.NAME, str) and mod.NAME
    assert mod.NAME == stem.replace("_", "-"), "a pass's NAME is its file name with '-' for '_'"
    assert registry()[mod.NAME] is mod
    assert callable(mod.run)
    assert (mod.__doc__ or "").strip().startswith(f"{mod.NAME}:"), "docstring starts with 'NAME: what it does'"


@pytest.mark.parametrize("stem", PASS_FILES)
def test_pass_has_lit_tests(stem):
    name = importlib.import_module(f"agentc.passes.{stem}").NAME
    tests = [p for ext in ("mlir", "agent", "test")
             for p in glob.glob(os.path.join(REPO, "test", "lit", "passes", name, f"*.{ext}"))]
    assert tests, f"no lit tests in test/lit/passes/{name}/"


def test_registry_has_nothing_but_the_files():
    names = {importlib.import_module(f"agentc.passes.{stem}").NAME for stem in PASS_FILES}
    assert set(registry()) == names
