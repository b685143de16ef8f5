"""Plan pictures: Mermaid and dot text structure, SVG through Graphviz, Pareto SVG."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

from agentc import pictures
from agentc.diagnostics import ToolchainError

PLAN = {
    "ops": [
        {"id": "ans.prefill", "kind": "llm.prefill", "pool": "h100", "device": "H100", "est_latency_ms": 80},
        {"id": "ans.decode", "kind": "llm.decode", "pool": "a100", "device": "A100", "est_latency_ms": 30.5},
        {"id": "text", "kind": "stt.encode", "pool": "h100", "device": "H100", "est_latency_ms": 12},
    ],
    "edges": [
        {"src": "ans.prefill", "dst": "ans.decode", "src_pool": "h100", "dst_pool": "a100", "ms": 10,
         "bytes": 2.5e8},
        {"src": "text", "dst": "ans.prefill", "src_pool": "h100", "dst_pool": "h100", "ms": 0, "bytes": 0},
    ],
}


def test_mermaid_has_one_subgraph_per_pool_and_labelled_edges():
    text = pictures.to_mermaid(PLAN)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert [l.strip() for l in lines if l.strip().startswith("subgraph")] == [
        'subgraph pool_a100["a100 (A100)"]', 'subgraph pool_h100["h100 (H100)"]']
    assert sum(1 for l in lines if l.strip() == "end") == 2
    assert '  op_ans_prefill -->|"10 ms, 250 MB"| op_ans_decode' in lines
    assert '    op_ans_decode["ans.decode<br/>llm.decode<br/>30.5 ms"]' in lines
    # ops sit inside their pool's subgraph
    a100 = lines.index('  subgraph pool_a100["a100 (A100)"]')
    assert lines[a100 + 1].strip().startswith("op_ans_decode[")


def test_dot_has_one_cluster_per_pool_and_labelled_edges():
    text = pictures.to_dot(PLAN)
    assert text.startswith("digraph plan {") and text.rstrip().endswith("}")
    assert text.count("subgraph cluster_") == 2
    assert "subgraph cluster_h100 {" in text and 'label="h100 (H100)";' in text
    assert 'op_ans_prefill -> op_ans_decode [label="10 ms, 250 MB"];' in text
    assert 'op_text [label="text\\nstt.encode\\n12 ms"];' in text
    assert text.count("{") == text.count("}")


def test_outputs_are_deterministic_under_reordering():
    shuffled = {"ops": list(reversed(PLAN["ops"])), "edges": list(reversed(PLAN["edges"]))}
    assert pictures.to_dot(shuffled) == pictures.to_dot(PLAN)
    assert pictures.to_mermaid(shuffled) == pictures.to_mermaid(PLAN)


def test_quotes_in_names_are_escaped():
    plan = {"ops": [{"id": 'a"b', "kind": "k", "pool": "p", "device": "d", "est_latency_ms": 1}], "edges": []}
    assert 'label="a\\"b' in pictures.to_dot(plan)
    assert "a#quot;b" in pictures.to_mermaid(plan)


def test_svg_without_graphviz_says_how_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match="graphviz is not installed; install the Debian package "
                                            "graphviz or use --format dot"):
        pictures.to_svg(pictures.to_dot(PLAN))


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz (dot) is not installed")
def test_svg_with_graphviz():
    svg = pictures.to_svg(pictures.to_dot(PLAN))
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert b"cluster_h100" in svg


def test_pareto_svg_marks_the_front():
    pts = [{"e2e_ms": 100, "usd_per_request": 0.02, "label": "fast"},
           {"e2e_ms": 200, "usd_per_request": 0.01, "label": "cheap"},
           {"e2e_ms": 250, "usd_per_request": 0.015, "label": "dominated"},
           (150, 0.012)]
    svg = pictures.pareto_svg(pts)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    circles = root.findall(f"{ns}circle")
    assert len(circles) == 4
    assert sorted(c.get("class") for c in circles) == ["dominated", "front", "front", "front"]
    line = root.find(f"{ns}polyline")
    assert line is not None and len(line.get("points").split()) == 3
    assert "e2e latency (ms)" in svg and "$ / request" in svg


def test_pareto_svg_single_point():
    root = ET.fromstring(pictures.pareto_svg([(10, 1.0)]))
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 1
