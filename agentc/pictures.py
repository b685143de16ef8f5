"""Pictures of a plan: Mermaid and Graphviz text, SVG through Graphviz, and a hand-drawn
SVG of a cost/latency Pareto front.

Input is a plain dict shaped like the manifest (`plan_view`):

    {"ops":   [{"id", "kind", "pool", "device", "est_latency_ms"}, ...],
     "edges": [{"src", "dst", "src_pool", "dst_pool", "ms", "bytes"}, ...]}

Each pool becomes one cluster (dot) or subgraph (mermaid) holding the ops placed on it;
edges carry their transfer time. Output is deterministic: ops and pools are emitted in
sorted order and numbers are formatted with `%g`, so the same plan gives the same bytes.

Graphviz is an optional system tool (`dot`); without it `to_svg` raises a ToolchainError
saying how to install it. `pareto_svg` needs nothing: the front is a few points and
lines, and a plotting library would be a heavy dependency for that.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

from agentc.diagnostics import ToolchainError

GRAPHVIZ_MISSING = "graphviz is not installed; install the Debian package graphviz or use --format dot"


def _ident(text: str, prefix: str) -> str:
    """A node/cluster name both Mermaid and dot accept (ids may contain dots, dashes)."""
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", text)


def _ms(value) -> str:
    return "?" if value is None else f"{float(value):.3g} ms"


def _bytes(value) -> str:
    if not value:
        return ""
    value = float(value)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} B"


def _by_pool(plan_view: dict) -> dict[str, list[dict]]:
    pools: dict[str, list[dict]] = {}
    for op in plan_view.get("ops", []):
        pools.setdefault(str(op.get("pool", "?")), []).append(op)
    return {p: sorted(ops, key=lambda o: str(o["id"])) for p, ops in sorted(pools.items())}


def _edges(plan_view: dict) -> list[dict]:
    return sorted(plan_view.get("edges", []), key=lambda e: (str(e["src"]), str(e["dst"])))


def _edge_label(e: dict) -> str:
    parts = [_ms(e.get("ms")) if e.get("ms") is not None else ""]
    if e.get("bytes"):
        parts.append(_bytes(e["bytes"]))
    return ", ".join(p for p in parts if p)


def _op_label(op: dict) -> str:
    return f"{op['id']}\n{op.get('kind', '')}\n{_ms(op.get('est_latency_ms'))}"


def to_mermaid(plan_view: dict) -> str:
    """A Mermaid flowchart: one subgraph per pool, edges labelled with transfer ms."""
    lines = ["flowchart LR"]
    for pool, ops in _by_pool(plan_view).items():
        device = ops[0].get("device", "")
        title = f"{pool} ({device})" if device else pool
        lines.append(f'  subgraph {_ident(pool, "pool_")}["{_mermaid_text(title)}"]')
        for op in ops:
            label = "<br/>".join(_mermaid_text(x) for x in _op_label(op).split("\n"))
            lines.append(f'    {_ident(str(op["id"]), "op_")}["{label}"]')
        lines.append("  end")
    for e in _edges(plan_view):
        a, b = _ident(str(e["src"]), "op_"), _ident(str(e["dst"]), "op_")
        label = _edge_label(e)
        lines.append(f'  {a} -->|"{_mermaid_text(label)}"| {b}' if label else f"  {a} --> {b}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(plan_view: dict) -> str:
    """Graphviz dot: one `cluster_<pool>` subgraph per pool, edges labelled with ms."""
    lines = ["digraph plan {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];',
             '  edge [fontname="Helvetica"];']
    for pool, ops in _by_pool(plan_view).items():
        device = ops[0].get("device", "")
        title = f"{pool} ({device})" if device else pool
        lines.append(f"  subgraph {_ident(pool, 'cluster_')} {{")
        lines.append(f'    label="{_dot_text(title)}";')
        for op in ops:
            lines.append(f'    {_ident(str(op["id"]), "op_")} [label="{_dot_text(_op_label(op))}"];')
        lines.append("  }")
    for e in _edges(plan_view):
        a, b = _ident(str(e["src"]), "op_"), _ident(str(e["dst"]), "op_")
        label = _edge_label(e)
        lines.append(f'  {a} -> {b} [label="{_dot_text(label)}"];' if label else f"  {a} -> {b};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(dot_text: str) -> bytes:
    """Render dot text with Graphviz (`dot -Tsvg`)."""
    exe = shutil.which("dot")
    if exe is None:
        raise ToolchainError(GRAPHVIZ_MISSING)
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=dot_text.encode(), capture_output=True, check=False)
    except OSError as e:
        raise ToolchainError(f"cannot run graphviz: {e.strerror}", command="dot -Tsvg") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ToolchainError(f"graphviz failed: {err[0] if err else f'exit {proc.returncode}'}",
                             command="dot -Tsvg < plan.dot")
    return proc.stdout


# ----------------------------------------------------------------------------- Pareto plot

def pareto_svg(points, width: int = 480, height: int = 320) -> str:
    """An SVG scatter of (latency ms, $/request) plans with the Pareto front as a line.

    `points` is a list of dicts with `e2e_ms` and `usd_per_request` (an optional `label`),
    or of (e2e_ms, usd_per_request) pairs. Dominated points are drawn hollow.
    """
    pts = []
    for p in points:
        if isinstance(p, dict):
            pts.append((float(p["e2e_ms"]), float(p["usd_per_request"]), str(p.get("label", ""))))
        else:
            pts.append((float(p[0]), float(p[1]), str(p[2]) if len(p) > 2 else ""))
    pts.sort()
    front = _front(pts)
    left, right, top, bottom = 64, 16, 16, 44
    pw, ph = width - left - right, height - top - bottom

    def scale(lo, hi):
        if hi - lo < 1e-12:
            lo, hi = lo - 1, hi + 1
        pad = (hi - lo) * 0.05
        return lo - pad, hi + pad

    xs, ys = [p[0] for p in pts] or [0.0], [p[1] for p in pts] or [0.0]
    x0, x1 = scale(min(xs), max(xs))
    y0, y1 = scale(min(ys), max(ys))

    def px(x):
        return left + (x - x0) / (x1 - x0) * pw

    def py(y):
        return top + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, sans-serif" font-size="11">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for i in range(5):
        fx, fy = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{px(fx):.1f}" y="{top + ph + 14}" text-anchor="middle">{fx:.3g}</text>')
        out.append(f'<text x="{left - 4}" y="{py(fy) + 4:.1f}" text-anchor="end">{fy:.3g}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">e2e latency (ms)</text>')
    out.append(f'<text x="12" y="{top + ph / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + ph / 2:.1f})">$ / request</text>')
    if len(front) > 1:
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in front)
        out.append(f'<polyline class="front" points="{path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    on_front = set(front)
    for p in pts:
        fill = "#1f77b4" if p in on_front else "none"
        title = f"<title>{html.escape(p[2] + ': ' if p[2] else '')}{p[0]:g} ms, ${p[1]:g}</title>"
        out.append(f'<circle class="{"front" if p in on_front else "dominated"}" cx="{px(p[0]):.1f}" '
                   f'cy="{py(p[1]):.1f}" r="4" fill="{fill}" stroke="#1f77b4">{title}</circle>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _front(pts: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points not dominated in (latency, cost), in order of latency."""
    front, best = [], float("inf")
    for p in sorted(pts):
        if p[1] < best:
            front.append(p)
            best = p[1]
    return front
