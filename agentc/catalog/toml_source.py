"""A TOML file with the source position of every table and key.

`tomllib` keeps no positions after parsing, yet every catalog or cluster mistake must
be reported as `file:line:col`. `TomlFile` parses the text once with `tomllib` and
indexes header and key lines with two regular expressions; `loc` maps a (table, key,
array index) back to a line and column. The index is best-effort (a key on a line of
its own, the common layout); a miss falls back to the table header or a text search.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any, Iterable

from agentc.diagnostics import CatalogError, SourceLoc, locate_in_file
from agentc.inputs import read_source

__all__ = ["TomlFile"]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)\s*=")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


class TomlFile:
    """A parsed TOML file (`data`) plus a line index of tables and keys, to locate errors."""

    def __init__(self, path: str, what: str = "TOML file", loc: SourceLoc | None = None):
        """Read and parse `path`; `what` and `loc` (the entry that named the file, if
        any) place errors about the file as a whole, see `agentc.inputs.read_source`."""
        self.path = path
        text = read_source(path, what, loc=loc, error=CatalogError)
        self.data: dict[str, Any] = _parse(path, text)
        # sections: list of (name parts, is_array, header line, {key: (line, col)})
        self.sections: list[tuple[tuple[str, ...], bool, int, dict[str, tuple[int, int]]]] = [
            ((), False, 1, {})]
        for lineno, line in enumerate(text.splitlines(), start=1):
            h = _HEADER.match(line)
            if h and not _KEY.match(line):
                parts = tuple(p.strip().strip("\"'") for p in h.group(2).split("."))
                self.sections.append((parts, h.group(1) == "[[", lineno, {}))
                continue
            k = _KEY.match(line)
            if k:
                key = k.group(1).strip("\"'")
                self.sections[-1][3].setdefault(key, (lineno, line.index(k.group(1)) + 1))

    def loc(self, table: tuple[str, ...] = (), key: str | None = None, index: int = 0) -> SourceLoc:
        """Position of `key` in table `table` (the `index`-th one for arrays of tables)."""
        matches = [s for s in self.sections if s[0] == table]
        if not matches:
            needle = key or (table[-1] if table else "")
            return locate_in_file(self.path, needle) if needle else SourceLoc(self.path, 1, 1)
        sec = matches[min(index, len(matches) - 1)]
        if key is not None and key in sec[3]:
            line, col = sec[3][key]
            return SourceLoc(self.path, line, col)
        return SourceLoc(self.path, sec[2], 1)

    def error(self, msg: str, table: tuple[str, ...] = (), key: str | None = None, index: int = 0,
              notes: Iterable[str] = ()) -> CatalogError:
        return CatalogError(msg, self.loc(table, key, index), tuple(notes))


def _parse(path: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        if m:
            loc = SourceLoc(path, int(m.group(1)), int(m.group(2)))
            msg = msg[: m.start()].rstrip()
        else:
            loc = SourceLoc(path, max(1, text.count("\n")), 1)
        raise CatalogError(f"invalid TOML: {msg}", loc) from None
    except RecursionError:
        # tomllib recurses once per nested array or inline table; no inventory nests
        # more than a few levels, so point at the first opener of the deepest run.
        raise CatalogError("invalid TOML: arrays or inline tables nested too deeply", _deepest(path, text)) from None


def _deepest(path: str, text: str) -> SourceLoc:
    """The opener (`[` or `{`) at which nesting first gets deepest (brackets inside
    strings and comments are counted too: good enough to point at a runaway nest)."""
    depth = best = 0
    where = (1, 1)
    line, col = 1, 0
    for ch in text:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        elif ch in "[{":
            depth += 1
            if depth > best:
                best, where = depth, (line, col)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return SourceLoc(path, *where)
