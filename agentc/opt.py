"""`python -m agentc.opt`: the `agentc-opt` command without relying on console scripts
on PATH (used by the lit suite's %agentc-opt substitution)."""

import sys

from agentc.cli import opt_main

if __name__ == "__main__":
    sys.argv[0] = "agentc-opt"
    opt_main()
