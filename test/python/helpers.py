"""Helpers shared by the pytest modules (imported by name: this directory is on sys.path)."""

from __future__ import annotations

import os


def tree_bytes(root: str, dirs: bool = False) -> dict[str, bytes]:
    """Every file under `root` as relative path -> bytes; with `dirs`, every directory
    too, as "path/" -> b"" (so an empty directory left behind shows up)."""
    out = {}
    for dirpath, subdirs, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = f.read()
        if dirs:
            for name in subdirs:
                out[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = b""
    return out


def serve_shutdown(timeout_s: float = 120.0) -> None:
    """serve.shutdown(), then wait until Serve's named actors (controller, proxies) are
    gone: shutdown kills them asynchronously, and a Serve started next in the same Ray
    session (another test file) would otherwise be handed the dying proxy by name."""
    import time

    import ray
    from ray import serve

    serve.shutdown()
    deadline = time.time() + timeout_s
    while any(a["name"].startswith("SERVE_") for a in ray.util.list_named_actors(all_namespaces=True)):
        assert time.time() < deadline, "Serve's actors outlived serve.shutdown()"
        time.sleep(0.2)


def free_port() -> int:
    """A TCP port free now on 127.0.0.1 (other jobs share this machine)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def deploy_serve_config(doc: dict, port: int, timeout_s: float):
    """Deploy a Serve config document as `serve run serve.yaml` does (serve_start, then
    the controller builds the application from import_path and args) and wait until its
    one application is RUNNING or DEPLOY_FAILED; its status. The caller shuts Serve
    down (serve_shutdown), also when this fails."""
    import time

    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    (spec,) = doc["applications"]
    client = serve_api.serve_start(http_options={"host": "127.0.0.1", "port": port})
    client.deploy_apps(ServeDeploySchema.model_validate(doc), _blocking=False)
    deadline = time.time() + timeout_s
    while True:
        status = serve.status().applications.get(spec["name"])
        if status is not None and status.status in ("RUNNING", "DEPLOY_FAILED"):
            return status
        assert time.time() < deadline, f"the application neither ran nor failed: {status}"
        time.sleep(0.5)


def cli_ok(*args) -> str:
    """`agentc ARGS` in this process (click's runner); its output, asserting exit 0."""
    from click.testing import CliRunner

    from agentc.cli import cli

    res = CliRunner().invoke(cli, list(args), prog_name="agentc")
    assert res.exit_code == 0, res.output
    return res.output
