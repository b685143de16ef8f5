"""Writing outputs: whole directories and single files, atomically, with OS errors
reported as the user's (a path to fix), not as a crash.

Kept apart from the driver (no MLIR import), so light commands such as `calibrate`
write their files the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from agentc.diagnostics import OutputError, UsageError

MARKER = ".agentc-output"
MARKER_TEXT = b"written by agentc; the whole directory is replaced on each compile\n"


@contextlib.contextmanager
def writing(dest):
    """Within: an OSError becomes `cannot write 'dest': reason`, a user error (exit 1)."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"cannot write '{dest}': {e.strerror or e}") from None


def write_outputs(files: dict[str, bytes], dest: str) -> None:
    """Write `files` (relative path -> bytes) as directory `dest`, atomically: all of
    them appear, replacing what was there, or nothing changes."""
    with writing(dest):
        dest = os.path.normpath(dest)
        parent = os.path.dirname(os.path.abspath(dest))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.tmp-", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        try:
            for rel, data in sorted(files.items()):
                target = os.path.join(tmp, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data)
            old = None
            if os.path.exists(dest):
                old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.old-", dir=parent)
                os.rmdir(old)
                os.rename(dest, old)
            os.rename(tmp, dest)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def write_file_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace one file atomically (temp file in the same directory + rename)."""
    with writing(path):
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def check_replaceable(dest: str, flag: str) -> None:
    """agentc replaces only directories it wrote (they hold MARKER) or empty ones."""
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise UsageError(f"output path '{dest}' exists and is not a directory; refusing to replace it "
                         f"(choose another {flag})")
    if os.path.isdir(dest) and os.listdir(dest) and not os.path.exists(os.path.join(dest, MARKER)):
        raise UsageError(f"output directory '{dest}' exists and was not written by agentc; "
                         f"refusing to replace it (choose another {flag})")


def check_writable(path: str) -> None:
    """Fail now, before anything is written, if `path` cannot be created: probe the
    nearest existing ancestor with a temporary file."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write '{path}': '{parent}' is not a directory")
    with writing(path):
        fd, probe = tempfile.mkstemp(prefix=".agentc-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
