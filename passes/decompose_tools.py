"""decompose-tools: tool.invoke -> tool.lookup + tool.compute (paper Fig. 7).

The lookup half marshals the arguments and sends the request (its cost is the payload
over the host's network); the compute half is the remote execution with the declared
latency and the response payload. Splitting them lets the planner see that neither
needs an accelerator.
"""

from __future__ import annotations

from agentc.frontend.lower import attrs
from agentc.passes._ir import apply_patterns, get, make

NAME = "decompose-tools"


def run(module, ctx) -> None:
    def rewrite_invoke(op, rewriter):
        label = get(op, "label", "tool")
        tool, latency, payload = get(op, "tool"), get(op, "latency_ms"), get(op, "payload_bytes")
        with rewriter.ip:
            req = make("tool.lookup", list(op.operands), "json",
                       attrs(label=f"{label}.lookup", call=label, tool=tool, latency_ms=0.0,
                             payload_bytes=payload), op.location)
            res = make("tool.compute", [req], "json",
                       attrs(label=f"{label}.compute", call=label, tool=tool, latency_ms=float(latency),
                             payload_bytes=payload), op.location)
        rewriter.replace_op(op, [res])

    apply_patterns(module, {"tool.invoke": rewrite_invoke})
