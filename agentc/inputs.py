"""Bounded, non-blocking reads of the files a user hands to agentc.

Every input (`.agent` sources and their imports, catalog and cluster TOML, `.mlir`) is
read through `read_source`, so one rule holds for all of them: only regular files are
read (a device such as `/dev/zero` would grow memory without end, a FIFO would block
forever, a directory has no text), the size is bounded, and the bytes must be UTF-8.
The file type is checked with `os.stat` before opening, and the open itself uses
`O_NONBLOCK` so that a file swapped for a FIFO between the check and the open cannot
block either; `fstat` on the open descriptor then decides.

The limit is `DEFAULT_MAX_INPUT_BYTES` (16 MiB: far above any hand-written program or
inventory) unless the environment variable `AGENTC_MAX_INPUT_BYTES` gives another
positive integer number of bytes.
"""

from __future__ import annotations

import os
import stat

from agentc.diagnostics import AgentcError, SourceLoc, UsageError

__all__ = ["DEFAULT_MAX_INPUT_BYTES", "LIMIT_ENV", "decode_utf8", "max_input_bytes", "read_source"]

DEFAULT_MAX_INPUT_BYTES = 16 * 1024 * 1024
LIMIT_ENV = "AGENTC_MAX_INPUT_BYTES"
_CHUNK = 1 << 20


def max_input_bytes() -> int:
    """The size limit in force: `AGENTC_MAX_INPUT_BYTES` if set, else the default."""
    raw = os.environ.get(LIMIT_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_INPUT_BYTES
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{LIMIT_ENV} must be a positive integer number of bytes, got {raw!r}")
    return value


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_source(path: str | os.PathLike, what: str = "input file", limit: int | None = None, *,
                loc: SourceLoc | None = None, error: type[AgentcError] = AgentcError) -> str:
    """The UTF-8 text of the regular file `path`, at most `limit` bytes (default:
    `max_input_bytes()`).

    `what` names the file in messages ("import", "cluster file"). Problems with the file
    as a whole (missing, not a regular file, too big, unreadable) are reported at `loc`
    (e.g. the import statement that named it); a byte that is not UTF-8 is reported at
    its own line and column in `path`. Errors are of class `error`.
    """
    path = os.fspath(path)
    limit = max_input_bytes() if limit is None else limit
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"cannot open '{path}': no such file", loc) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise error(f"cannot read {what} '{path}': {getattr(e, 'strerror', None) or e}", loc) from None
    _check_regular(path, what, st.st_mode, st.st_size, limit, loc, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"cannot read {what} '{path}': {e.strerror or e}", loc) from None
    try:
        st = os.fstat(fd)
        _check_regular(path, what, st.st_mode, st.st_size, limit, loc, error)
        chunks, total = [], 0
        while True:  # the file may grow after fstat: never read past the limit
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                _too_big(path, what, limit, loc, error)
    except OSError as e:
        raise error(f"cannot read {what} '{path}': {e.strerror or e}", loc) from None
    finally:
        os.close(fd)
    return decode_utf8(b"".join(chunks), path, error)


def _check_regular(path: str, what: str, mode: int, size: int, limit: int, loc: SourceLoc | None,
                   error: type[AgentcError]) -> None:
    if not stat.S_ISREG(mode):
        raise error(f"{what} '{path}' is {_file_type(mode)}; only regular files are read", loc)
    if size > limit:
        _too_big(path, what, limit, loc, error)


def _too_big(path: str, what: str, limit: int, loc: SourceLoc | None, error: type[AgentcError]):
    raise error(f"{what} '{path}' is larger than the input limit of {limit} bytes", loc,
                (f"set {LIMIT_ENV} to a larger number of bytes to read it",))


def decode_utf8(raw: bytes, path: str, error: type[AgentcError] = AgentcError) -> str:
    """`raw` as UTF-8 text; a bad byte is an error at its own line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        head = raw[:e.start].decode("utf-8")  # valid up to the first bad byte
        line = head.count("\n") + 1
        col = len(head) - (head.rfind("\n") + 1) + 1
        raise error(f"'{path}' is not UTF-8 text: byte 0x{raw[e.start]:02x} cannot start or continue a character",
                    SourceLoc(path, line, col), ("save the file as UTF-8",)) from None
