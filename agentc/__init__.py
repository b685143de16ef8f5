"""agentc: compile agent graphs onto heterogeneous clusters."""

__version__ = "0.1.0"
