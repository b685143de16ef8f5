"""`agentc run`: execute a compiled plan in this process on CPU with real weights.

Filled in by the runtime work of issue 19 (weights, tokenizers, op runners, the CLI).
"""
