"""Writing outputs: whole directories and single files, atomically, with OS errors
reported as the user's (a path to fix), not as a crash.

Kept apart from the pipeline (no MLIR import), so light commands such as `calibrate`
write their files the same way. Every file of a directory output lands inside it: a
relative path that would leave it (absolute, `..`, NUL) is refused, whatever produced it.
"""

from __future__ import annotations

import contextlib
import os
import re
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
        remove_leftovers(dest)
        tmp = tempfile.mkdtemp(prefix=_scratch_prefix(dest, "tmp"), dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        try:
            for rel, data in sorted(files.items()):
                target = os.path.join(tmp, _inside(rel, dest))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data)
            old = None
            if os.path.exists(dest):
                old = tempfile.mkdtemp(prefix=_scratch_prefix(dest, "old"), dir=parent)
                os.rmdir(old)
                os.rename(dest, old)
            os.rename(tmp, dest)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _scratch_prefix(dest: str, kind: str) -> str:
    """Name of a scratch directory beside `dest`: `.NAME.tmp-PID-` (or `.old-`), so a
    later compile can tell one whose writer died from one still being written."""
    return f".{os.path.basename(os.path.normpath(dest))}.{kind}-{os.getpid()}-"


def remove_leftovers(dest: str) -> list[str]:
    """Remove the scratch directories a killed compile of `dest` left beside it (their
    writing process is gone); those of a compile still running are kept."""
    parent = os.path.dirname(os.path.abspath(os.path.normpath(dest)))
    base = os.path.basename(os.path.normpath(dest))
    pattern = re.compile(rf"\.{re.escape(base)}\.(?:tmp|old)-(\d+)-\w+")
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in sorted(names):
        m = pattern.fullmatch(name)
        path = os.path.join(parent, name)
        if m is None or os.path.islink(path) or not os.path.isdir(path) or _alive(int(m.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _inside(rel: str, dest: str) -> str:
    """`rel` if it names a file strictly inside the output directory, else an error."""
    parts = rel.replace("\\", "/").split("/")
    if not rel or "\0" in rel or os.path.isabs(rel) or any(p in ("", ".", "..") for p in parts):
        raise OutputError(f"refusing to write '{rel}': it is not a plain path inside '{dest}'")
    return rel


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
    """agentc replaces only directories it wrote (they hold MARKER) or empty ones, and
    never a symbolic link (replacing it would swap the link for a directory)."""
    if os.path.islink(os.path.normpath(dest)):
        raise UsageError(f"output path '{dest}' is a symbolic link; name the directory it points to "
                         f"(choose another {flag})")
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


# ----------------------------------------------------------------------------- what a compile writes

def collect_outputs(c, output: str | None):
    """What a compile writes: (None, None) to print IR on stdout, else
    (files, (destination, files))."""
    from agentc.pipeline import stage_is_ir

    if c.options.emit is not None and output is None:
        return None, None
    if c.options.emit is not None and stage_is_ir(c.options.emit):
        name = f"{c.stem}.{c.stage}.mlir"
        dest = output if output.endswith(".mlir") else os.path.join(output, name)
        payload = {os.path.basename(dest): c.asm().encode()}
        return payload, (dest, payload)
    # A whole output directory: a full compile, or --emit at a file stage (llvm, ptx,
    # ...), whose result is the artifacts built so far.
    dest = output or "out"
    payload = dict(c.artifacts)
    if c.options.emit is None and c.module is not None:
        payload[f"{c.stem}.{c.stage}.mlir"] = c.asm().encode()
    check_replaceable(dest, "-o")
    payload[MARKER] = MARKER_TEXT
    return payload, (dest, payload)


def collect_dumps(c, dest: str | None) -> dict[str, bytes] | None:
    """The --dump-phases-to directory's files (it too is replaced whole), or None."""
    if not dest:
        return None
    check_replaceable(dest, "--dump-phases-to")
    return {**c.dumps, MARKER: MARKER_TEXT}


def _make_escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(" ", "\\ ").replace("#", "\\#").replace("$", "$$")


def depfile_path(c, depfile: str | None, target: str | None) -> str:
    """Where -MD writes the depfile: -MF, else next to the output as OUTPUT.d."""
    return depfile or ((target or f"{c.stem}.out").rstrip("/") + ".d")


def write_depfile(c, depfile: str, target: str | None) -> None:
    """Make-style depfile: the output depends on the source, its imports, the cluster
    and catalog files."""
    target = target or f"{c.stem}.out"
    deps = c.all_inputs()
    lines = [f"{_make_escape(target)}: " + " \\\n  ".join(_make_escape(d) for d in deps)]
    lines += [f"{_make_escape(d)}:" for d in deps]
    write_file_atomic(depfile, ("\n".join(lines) + "\n").encode())
