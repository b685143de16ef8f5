"""Pytest setup for agentc's tests: markers only (pyproject declares gpu and ptxas; slow
is added here so `-m 'not slow'` works without touching pyproject)."""


def pytest_configure(config):
    registered = "\n".join(config.getini("markers"))
    for name, doc in (("gpu", "needs an NVIDIA GPU (never required)"),
                      ("ptxas", "needs ptxas on PATH"),
                      ("slow", "takes tens of seconds (lit suite, cmake, fuzzing)")):
        if not any(line.split(":")[0].strip() == name for line in registered.splitlines()):
            config.addinivalue_line("markers", f"{name}: {doc}")
