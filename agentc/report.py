"""What `agentc` prints for people: a rich table on a terminal, plain lines otherwise.

NO_COLOR is respected; when stdout is not a terminal (CI logs, pipes) the output is
plain text with no escape codes.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, no_color=bool(os.environ.get("NO_COLOR")) or not tty,
                   force_terminal=tty, highlight=False, width=None if tty else 200)


def print_compile_summary(c, dest: str) -> None:
    out = console()
    out.print(f"agentc: compiled {c.input_path} to {dest}/ (stage {c.stage})")
    rows = c.data.get("summary_rows")
    if rows:
        table = Table(*rows[0], title="placement")
        for r in rows[1:]:
            table.add_row(*[str(x) for x in r])
        out.print(table)
