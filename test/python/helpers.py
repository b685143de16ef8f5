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
