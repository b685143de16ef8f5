"""`python -m agentc`: the `agentc` command without relying on console scripts on PATH
(the lit suite runs the compiler this way, with the interpreter that runs lit)."""

import sys

from agentc.cli import main

if __name__ == "__main__":
    sys.argv[0] = "agentc"
    main()
