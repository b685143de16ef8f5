"""The paper's disaggregated-serving TCO study (arXiv 2507.19635, section 5 and Table 5).

For every prefill::decode pair of accelerators, every model (Llama 3 8B/70B), dtype
(FP16/FP8) and sequence shape (ISL/OSL 512/4096 and 4096/512), each side picks its
tensor-parallel degree and batch size: the cheapest per request among the batches that
fit in memory and meet the interactive SLA (TTFT <= 250 ms for prefill, TBT <= 20 ms
per decode step; powers of two and the largest such batch) or, offline, among those
that fit. A side's cost per
request is its devices' $/hr x its time / batch; the pair's TCO benefit is the
H100::H100 cost per request divided by the pair's (above 1: cheaper than the baseline).
The KV transfer between sides is not priced (the paper prices devices only), but a pair
whose link cannot carry the KV cache within the TBT is reported as such.
"""

from __future__ import annotations

import dataclasses
import itertools

from agentc.catalog import Catalog, Cluster, DeviceSpec, model_from_decl
from agentc.costmodel import batch_sweep, kv_cache_bytes

ACCELERATORS = ("A40", "A100", "Gaudi3", "MI300x", "H100", "B200")
MODELS = ("llama3-8b", "llama3-70b")
DTYPES = ("fp16", "fp8")
SHAPES = ((512, 4096), (4096, 512))
INTERACTIVE = {"ttft_ms": 250.0, "tbt_ms": 20.0}
MAX_BATCH = 512
BASELINE = ("H100", "H100")
# The paper's TCO figures (arXiv 2507.19635v1 section 5) compare six pairs: prefill on H100 or B200, decode on H100,
# B200 or Gaudi 3 (H100::H100 is the baseline).
PAPER_PAIRS = tuple((p, d) for p in ("H100", "B200") for d in ("H100", "B200", "Gaudi3"))
COMPARABLE = 0.95  # "comparable to": within 5%


@dataclasses.dataclass(frozen=True)
class Side:
    device: str
    tp: int
    batch: int
    time_ms: float
    usd_per_request: float


@dataclasses.dataclass(frozen=True)
class Scenario:
    model: str
    dtype: str
    isl: int
    osl: int
    mode: str  # "interactive" | "offline"

    @property
    def name(self) -> str:
        return f"{self.model} {self.dtype} {self.isl}/{self.osl} {self.mode}"


def scenarios() -> list[Scenario]:
    return [Scenario(m, d, i, o, mode) for m in MODELS for d in DTYPES for i, o in SHAPES
            for mode in ("interactive", "offline")]


def _best_side(kind: str, attrs: dict, model, dev: DeviceSpec, cluster: Cluster, limit_ms: float | None) -> Side | None:
    """Cheapest (tp, batch) per request for one side that fits and meets its SLA term."""
    best = None
    for tp in dev.admissible_tp():
        for b, c in batch_sweep(kind, attrs, model, dev, tp, cluster, limit_ms, MAX_BATCH, refine=True):
            side = Side(dev.name, tp, b, c.time_ms, c.usd_per_call / b)
            if best is None or side.usd_per_request < best.usd_per_request - 1e-15:
                best = side
    return best


def sweep(catalog: Catalog, cluster: Cluster, devices=ACCELERATORS, only: list[Scenario] | None = None):
    """{scenario name: {(P, D): (benefit or None, prefill Side, decode Side)}}."""
    out = {}
    for sc in only or scenarios():
        model = model_from_decl(catalog.models[sc.model], dtype=sc.dtype)
        sla = INTERACTIVE if sc.mode == "interactive" else {"ttft_ms": None, "tbt_ms": None}
        pre = {d: _best_side("llm.prefill", {"tokens": sc.isl}, model, catalog.devices[d], cluster,
                             sla["ttft_ms"]) for d in devices}
        dec = {d: _best_side("llm.decode", {"context": sc.isl, "tokens": sc.osl}, model, catalog.devices[d],
                             cluster, sla["tbt_ms"]) for d in devices}

        def cost(p, d):
            if pre[p] is None or dec[d] is None:
                return None
            return pre[p].usd_per_request + dec[d].usd_per_request

        base = cost(*BASELINE)
        row = {}
        for p, d in itertools.product(devices, devices):
            c = cost(p, d)
            row[(p, d)] = (None if c is None or base is None else base / c, pre[p], dec[d])
        out[sc.name] = row
    return out


def kv_link_gbps(model_name: str, dtype: str, isl: int, catalog: Catalog, tbt_ms: float = 20.0) -> float:
    """Link speed that moves one request's KV cache within one TBT (arXiv 2507.19635, section 5.2)."""
    model = model_from_decl(catalog.models[model_name], dtype=dtype)
    return kv_cache_bytes(model, isl, 1) * 8 / (tbt_ms / 1e3) / 1e9


def paper_findings(result) -> dict[str, dict[str, bool]]:
    """Which of the paper's orderings hold, per scenario, among its six pairs:
    `best` B200::Gaudi3 has the highest benefit; `beats_b200` it beats B200::B200;
    `h100_gaudi3` H100::Gaudi3 is comparable to (within 5%) or better than B200::B200.
    A scenario where a pair cannot meet the SLA counts as not holding."""
    out = {}
    for sc, row in result.items():
        b = {pair: row[pair][0] for pair in PAPER_PAIRS}
        if any(v is None for v in b.values()):
            out[sc] = {"best": False, "beats_b200": False, "h100_gaudi3": False}
            continue
        bg, bb, hg = b[("B200", "Gaudi3")], b[("B200", "B200")], b[("H100", "Gaudi3")]
        out[sc] = {"best": bg >= max(b.values()), "beats_b200": bg > bb, "h100_gaudi3": hg >= COMPARABLE * bb}
    return out
