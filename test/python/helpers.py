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
