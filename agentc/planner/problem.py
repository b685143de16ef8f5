"""The placement problem and the plan, as plain dataclasses.

The IR `place` pass builds a `Problem` from costed ops; `agentc.planner.solve` turns it
into a `Plan`. Nothing here knows about MLIR, so the solver can be tested and
benchmarked on hand-written or generated graphs.

Units live in the names: `_ms`, `_usd`, `usd_per_hr`, `gbps`, `bytes`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Option:
    """One way to run an op: on pool or device class `device` with `tp` devices.

    `busy_ms` is how long one execution keeps its devices busy (sets replicas under
    load); `time_ms` is its latency on the request path; `fee_usd` is what a call pays
    besides device time.
    """

    device: str
    tp: int
    time_ms: float
    usd_per_call: float
    busy_ms: float
    ttft_ms: float | None = None
    tbt_ms: float | None = None
    memory_ok: bool = True
    note: str = ""
    fee_usd: float = 0.0  # per-call charge on top of device time (an API fee): part of
    # usd_per_call, and still paid per call under load, where devices are paid per hour
    batch: int = 1  # executions one replica serves at once (decode); busy_ms and
    # usd_per_call are per execution, time_ms is the whole batch's


@dataclass
class PlanOp:
    """An op to place; `weight` is its expected executions per request."""

    id: str
    kind: str
    options: list[Option]
    weight: float = 1.0
    loc: str = ""
    model: str = ""  # the model it runs ("" none/unknown): decode ops of one model share
    # a pool's batches (planner/queueing.py, the batch a decode runs at)


@dataclass
class PlanEdge:
    """Data flowing src -> dst; `profiled[(from_dev, to_dev)] = (ms, usd)` overrides links."""

    src: str
    dst: str
    bytes: float
    weight: float = 1.0
    kind: str = "data"
    profiled: dict[tuple[str, str], tuple[float, float]] | None = None


@dataclass(frozen=True)
class Pool:
    """`count` devices of one class. A pool priced at 0 $/hr is metered: its ops pay
    `usd_per_call` under load (external APIs, serverless endpoints)."""

    name: str
    device_class: str
    count: int
    usd_per_hr: float
    cpu: bool = False


@dataclass(frozen=True)
class Link:
    """Undirected link between two pools or device classes."""

    a: str
    b: str
    gbps: float
    latency_ms: float
    usd_per_gb: float = 0.0


@dataclass(frozen=True)
class SLA:
    """Bounds and the statistic each one holds at, over the program's control-flow
    scenarios (loop trip counts, branch arms; see scenarios.py):

    - "all": every scenario that can happen meets the bound (plain `latency < T`);
    - "pNN" (e.g. "p99", "p99.9"): scenarios covering at least NN% of requests meet it;
    - "mean": the probability-weighted mean over scenarios meets it.
    """

    e2e_ms: float | None = None
    ttft_ms: float | None = None
    tbt_ms: float | None = None
    e2e_stat: str = "all"
    ttft_stat: str = "all"
    tbt_stat: str = "all"


def stat_quantile(stat: str) -> float | None:
    """The fraction of requests a statistic covers: "all" 1.0, "p99" 0.99, "mean" None.
    Raises ValueError on anything else."""
    if stat == "all":
        return 1.0
    if stat == "mean":
        return None
    if stat.startswith("p"):
        q = float(stat[1:]) / 100.0
        if 0.0 < q <= 1.0:
            return q
    raise ValueError(f"unknown SLA statistic '{stat}' (all, mean, pNN)")


def stat_name(stat: str) -> str:
    """How a term is written: "latency" for "all", "latency.p99", "latency.mean"."""
    return "" if stat == "all" else f".{stat}"


# ---------------------------------------------------------------------- control flow
# The program's structure, so the planner can enumerate what a request may execute.
# A body is a tuple of op ids, `Loop`s and `Branch`es in program order; every op of the
# problem appears once. `Problem.flow = None`: every op runs `weight` times, always.


@dataclass(frozen=True)
class Loop:
    """A pre-tested loop: each further trip (up to `max_trips`) with `continue_prob`."""

    body: tuple
    max_trips: int
    continue_prob: float


@dataclass(frozen=True)
class Branch:
    """`then` with probability `prob`, else `orelse`."""

    prob: float
    then: tuple
    orelse: tuple


Objective = Literal["cost", "latency", "tokens-per-dollar"]


@dataclass
class Problem:
    """Everything the solver needs. `lam` prices one ms of SLA violation in soft mode,
    in the objective's unit ($/request, or $/hr when `load_rps` > 0)."""

    ops: list[PlanOp]
    edges: list[PlanEdge]
    pools: list[Pool]
    links: list[Link]
    sla: SLA
    load_rps: float = 0.0
    objective: Objective = "cost"
    sla_mode: Literal["hard", "soft"] = "hard"
    lam: float = 1e3
    default_link: Link | None = None
    # HiGHS stops at this relative gap or time limit; a plan is labelled "optimal" only
    # when its gap to the proven bound is float noise (explain.OPTIMAL_GAP, 1e-9), so a
    # looser mip_rel_gap gives "feasible (gap X%)"
    time_limit_s: float = 10.0
    mip_rel_gap: float = 1e-9
    tokens_per_request: float = 0.0
    # pairs of op ids that must run on the same pool (an explicit all-reduce and the
    # tensor-parallel op whose shards it joins)
    colocate: list[tuple[str, str]] = field(default_factory=list)
    # service-time coefficient of variation the queueing waits assume (planner/queueing.py):
    # 1 = exponential (M/M/c, exact Erlang C), 0 = deterministic
    service_cv: float = 1.0
    # the program's loops and branches (None: a straight-line graph run `weight` times)
    flow: tuple | None = None
    # where a first token of the answer can come from, in program order: per LLM call whose
    # output reaches the returned value, the chain of ops from its prefill to its decode
    # (consecutive ops joined by an edge; a lone id is a chain of one). TTFT is the chain's
    # start plus one call of each op but the last, the transfers between, and one step
    # (tbt_ms) of the last. None: every op reporting a ttft_ms, alone.
    ttft_ops: list | None = None
    # placements the planner may not return (agentc/promise.py: plans predicted to miss
    # the SLA at the load), each its decisions as rows (op id, option rank, pool,
    # replicas, split key as split.key writes it, "" for none)
    exclude: tuple = ()


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Alternative:
    """The plan with one op moved to `option` on `pool`, everything else fixed."""

    option: Option
    pool: str
    e2e_ms: float
    cost: float
    delta_ms: float
    delta_cost: float
    feasible: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class SplitPart:
    """One pool's share of a split op (planner/split.py): `fraction` of its executions
    run `option` on `pool` with `replicas` replicas, waiting `wait_ms` at the percentile."""

    pool: str
    fraction: float
    option: Option
    replicas: int
    devices: int
    wait_ms: float


@dataclass
class OpPlacement:
    op: str
    option: Option
    pool: str
    replicas: int
    start_ms: float
    finish_ms: float
    slack_ms: float
    alternatives: list[Alternative] = field(default_factory=list)
    excluded: list[tuple[Option, str]] = field(default_factory=list)
    wait_ms: float = 0.0  # queueing wait per call under load (planner/queueing.py)
    # a split op (planner/split.py): its parts, largest first; `option`, `pool` and
    # `replicas` are then the largest part's, and `split_key` is what the IR records
    split: list[SplitPart] = field(default_factory=list)
    split_key: str = ""
    # a decode (planner/queueing.py): one call's time and TBT at the batch its load
    # fills (`run_batch`, at the e2e term's quantile; 1 without a load), what the plan's
    # latency and TBT count; `option` keeps the full batch's times it is sized and priced by
    time_ms: float | None = None
    tbt_ms: float | None = None
    run_batch: float | None = None

    @property
    def runner_up(self) -> Alternative | None:
        return self.alternatives[0] if self.alternatives else None


@dataclass(frozen=True)
class EdgePlacement:
    """A transfer between two different pools."""

    src: str
    dst: str
    src_pool: str
    dst_pool: str
    ms: float
    usd: float


@dataclass(frozen=True)
class Baseline:
    """A reference plan. `ratio` = plan cost / baseline cost (below 1: the MILP wins).
    `status`: the solver's for a solved fleet ("optimal", or "feasible" with its proven
    `gap` when the baselines' time ran out: a ratio against a cost that may fall), ""
    for greedy list scheduling, which nothing proves."""

    name: str
    feasible: bool
    cost: float | None
    e2e_ms: float | None
    usd_per_request: float | None
    ratio: float | None
    reason: str = ""
    status: str = ""
    gap: float = 0.0


@dataclass
class Plan:
    """A placement. `cost` is in the objective's unit: $/request, or $/hr under load."""

    ops: dict[str, OpPlacement]
    edges: list[EdgePlacement]
    e2e_ms: float
    ttft_ms: float | None
    tbt_ms: float | None
    usd_per_request: float
    usd_per_hr: float | None
    devices: dict[str, int]
    cost: float
    objective: str
    status: str  # "optimal" (proved, gap <= 1e-9) or "feasible (gap X%)"
    gap: float | None  # proven relative gap to the best bound; None when there is none
    solve_time_s: float
    critical_path: list[str]
    sla_slack_ms: float | None
    violations: list[str]
    penalty: float
    tokens_per_usd: float | None
    binding: list[str] = field(default_factory=list)
    baselines: list[Baseline] = field(default_factory=list)
    # the statistic e2e_ms / ttft_ms / tbt_ms are given at (SLA.e2e_stat etc.), and the
    # control-flow scenarios behind them: how many, and how many the program has (more
    # when they were merged into a sound bound, scenarios.MAX_SCENARIOS)
    stats: dict[str, str] = field(default_factory=dict)
    scenarios: int = 1
    scenarios_exact: bool = True

    @property
    def runner_up(self) -> dict[str, Alternative | None]:
        return {op_id: p.runner_up for op_id, p in self.ops.items()}

    @property
    def slack_ms(self) -> dict[str, float]:
        return {op_id: p.slack_ms for op_id, p in self.ops.items()}

    def to_dict(self) -> dict:
        """JSON-ready form with stable key order (solve time left out: not reproducible)."""
        d = asdict(self)
        d.pop("solve_time_s")
        for p in d["ops"].values():
            p["excluded"] = [{"option": o, "reason": r} for o, r in p["excluded"]]
        return d
