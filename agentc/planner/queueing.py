"""Queueing under load: how long a request waits for an op's replicas, in closed form.

Model. Under a load of lambda requests/s an op with weight w (executions per request)
sees executions arrive at rate lambda*w, taken as Poisson (the simulator's arrivals are
Poisson; loops and fan-out make them burstier, which the percentile margin absorbs). Each
of its `replicas` replicas holds `tp` devices of its pool and serves `batch` executions
at once, each for S = busy_ms * batch (a decode sequence keeps its batch slot for the
whole batch's decode; every other op has batch 1 and S = busy_ms). So the op is an
M/G/c queue with c = replicas * batch servers and offered load a = lambda*w*S Erlangs;
its replicas are dedicated to it, so the devices a pool provisions are the sum of
replicas * tp over its ops (never fewer, as a plan that pooled fractions would claim).

Waiting time. For exponential service (M/M/c) the wait is exactly
    P(W > t) = C(c, a) * exp(-(c - a) * t / S),
C being Erlang's C formula (the probability of waiting). Its q-quantile is therefore
    W_q = S / (c - a) * ln(C / (1 - q))  when C > 1 - q, else 0.
For general service with squared coefficient of variation cs2 we scale the waiting part
by the Allen-Cunneen factor (1 + cs2) / 2 (Poisson arrivals: ca2 = 1), keeping the
exponential tail; it is exact for cs2 = 1 and a standard, slightly pessimistic
approximation for M/D/c (cs2 = 0: half the M/M/c wait). The planner assumes cs2 = 1 by
default (`Problem.service_cv`): the cost model is deterministic, real service is not,
and M/M/c then never promises less wait than a less variable service delivers.

Why Erlang C and not a utilisation cap: the wait it gives is in ms, so it can sit on the
critical path next to the op's own time and the SLA bound decides how many replicas are
worth buying; a cap would need a per-op constant that means nothing to the SLA.

The batch a decode runs at. A decode option names the batch `B` its replicas may
serve, and its times (time_ms, tbt_ms) are those of a full batch; the load may fill
fewer. The simulator (as a serving engine) puts a new sequence on the fullest engine
with room, so a sequence shares its step with every sequence of its model in flight on
the pool, up to B. Under a load, with T(b) the call's time at batch b (linear between
the op's options on the same device and tp, the smallest one's below it, T(B) above):
    m = m_other + lambda*w * T(min(B, 1 + m)) / 1000       (Little's law; `filled_mean`)
its least fixed point (found exactly, one linear piece at a time), is the mean number
of its sequences in flight: a sequence sees itself and, arriving as Poisson, others in
flight as a Poisson count of mean m (M/G/inf occupancy). `m_other` is the same mean of
the other decode ops of its model and kind that have an option on the same device and
tp (their largest batch's fixed point, alone), since the simulator batches them
together wherever they land on one pool: conservative when they land elsewhere. A term
judged at quantile q prices the call at
    b_q = min(B, 1 + Poisson_q(m))                          (`filled_batch`)
(the mean term: min(B, 1 + m)), the e2e term's q for its time, TBT's for its step,
TTFT's for the step in a first-token chain. A sequence that finds others in flight
(b_q > 1) joins their engine at its next step boundary: up to one step more, on the
call's time and before its first token. Capacity (replicas, devices) stays sized at B:
a batch filled less is shorter, so it holds its devices less.

Without a load clause the plan is priced per request on the shared fleet (its cost at
the option's B, the fleet's throughput), and its latency terms are those of the
program's own requests arriving at LIGHT_LOAD_RPS (Poisson), with the pools' devices
free: no queueing wait, and decode batches the program's in-flight requests fill at
that rate by the rule above (about batch 1-3). `agentc plan --verify` and
`agentc simulate` check such a plan at the same rate.

A placed plan's prediction at a load (planner/predict.py) is not this sizing model: it
runs each pool as one queue (SharedQueue, below), with the simulator's service cv,
host waits on the path and a path's waits as one tail (path_wait_ms).

Candidates. The MILP stays linear by pricing each (op option, pool, replica count) as
its own choice: `candidates` lists, for one option, the replica counts from the least
stable one (c > a) up to the first at which the q-quantile wait is 0 (C <= 1 - q), each
with its devices and wait, so the one-hot over choices selects replicas too.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

DEFAULT_PERCENTILE = 99.0   # the simulator's too: terms without a percentile are judged at p99
# Without a load clause latency terms hold for the program's requests arriving at this
# rate (req/s, Poisson) on free pools; the simulator checks such a plan at it (sim/verify.py)
LIGHT_LOAD_RPS = 1.0
MAX_CANDIDATES = 24         # replica counts offered per option beyond the least stable one
NEGLIGIBLE_WAIT_MS = 1e-3   # a wait below a microsecond is not worth another replica


# Host work on a CPU pool shares the pool's devices through one queue (every host op
# of every request): the planner keeps that queue's utilisation at most this, and
# charges no wait for it on the path. At 0.7 an M/M/1 p99 wait is ln(70)/0.3 = 14
# service times (host calls take 0.1-5 ms); more devices wait far less. Without it, a
# single EPYC ran voice's host work 92% busy at 20 req/s and TTFT's p99 missed by 163 ms.
HOST_UTILISATION_CAP = 0.7

def erlang_b(c: int, a: float) -> float:
    """Erlang's B (loss) formula by its stable recursion B(k) = a B(k-1) / (k + a B(k-1))."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load `a` Erlangs (1 when
    the queue is unstable, a >= c). C = B / (1 - (a/c) (1 - B)) with B Erlang B."""
    if a <= 0:
        return 0.0
    if a >= c:
        return 1.0
    b = erlang_b(c, a)
    return b / (1.0 - (a / c) * (1.0 - b))


def wait_quantile_ms(c: int, a: float, service_ms: float, q: float, cs2: float = 1.0) -> float:
    """The q-quantile of the waiting time (ms) in M/G/c: exact for M/M/c (cs2 = 1),
    Allen-Cunneen scaled otherwise; inf when unstable."""
    if a <= 0 or service_ms <= 0:
        return 0.0
    if a >= c:
        return math.inf
    pw = erlang_c(c, a)
    if pw <= 1.0 - q:
        return 0.0
    return (1.0 + cs2) / 2.0 * service_ms / (c - a) * math.log(pw / (1.0 - q))


def mean_wait_ms(c: int, a: float, service_ms: float, cs2: float = 1.0) -> float:
    """Mean waiting time (ms) in M/G/c by Allen-Cunneen: C * S / (c - a) * (1 + cs2) / 2."""
    if a <= 0 or service_ms <= 0:
        return 0.0
    if a >= c:
        return math.inf
    return (1.0 + cs2) / 2.0 * erlang_c(c, a) * service_ms / (c - a)


@dataclass(frozen=True)
class Candidate:
    """One way to size an op on a pool: `replicas` of `tp` devices, and the q-quantile
    wait an execution then sees."""

    replicas: int
    devices: int
    wait_ms: float


def in_flight(rate_per_s: float, service_ms: float) -> float:
    """Little's law: executions in service at once (offered load in Erlangs)."""
    return rate_per_s * service_ms / 1000.0


def candidates(rate_per_s: float, busy_ms: float, tp: int, batch: int, q: float | None, cs2: float,
               max_devices: int | None, all_counts: bool = True) -> list[Candidate]:
    """Replica counts for one option at `rate_per_s` executions/s, least first.

    The least is the smallest stable count (replicas * batch > offered load); an option
    that keeps nothing busy holds no devices (its pool still hosts it: n >= tp); with `all_counts`, more follow until the wait at `q` is 0, at most
    MAX_CANDIDATES more and never more devices than `max_devices` (the first one is
    always returned, so an op too big for its pool still has a priced choice). `q` None:
    mean waits (a mean is 0 only without load, so the count stops at MAX_CANDIDATES or
    the pool's size)."""
    if busy_ms <= 0:  # nothing held (a call that only waits): hosted by the pool, no replica
        return [Candidate(1, 0, 0.0)]
    service = busy_ms * batch
    a = in_flight(rate_per_s, service)
    r = max(1, math.floor(a / batch) + 1)
    out = [Candidate(r, r * tp, wait_ms(r * batch, a, service, q, cs2))]
    while all_counts and out[-1].wait_ms > NEGLIGIBLE_WAIT_MS and len(out) <= MAX_CANDIDATES:
        r += 1
        if max_devices is not None and r * tp > max_devices:
            break
        out.append(Candidate(r, r * tp, wait_ms(r * batch, a, service, q, cs2)))
    return out


def fits_smaller_batch(rate_per_s: float, busy_ms: float, batch: int, q: float | None, cs2: float) -> bool:
    """True when one replica at this (smaller) `batch` holds the op's in-flight requests
    with no wait at `q`: a larger batch on the same devices is then slower at the same
    device count, so the load cannot fill it (Little's law) and it is not offered."""
    service = busy_ms * batch
    a = in_flight(rate_per_s, service)
    return a < batch and wait_ms(batch, a, service, 0.99 if q is None else q, cs2) == 0.0


def wait_level(q_stat: float | None) -> float | None:
    """The quantile waits are sized at, from the e2e term's statistic (problem.stat_quantile):
    its percentile for `latency.pNN`; p99 for a bound on every control-flow path (a
    queueing wait has no worst case: the simulator, too, judges such terms at p99);
    None, the mean wait, for `latency.mean`."""
    if q_stat is None:
        return None
    return DEFAULT_PERCENTILE / 100.0 if q_stat >= 1.0 else q_stat


def wait_ms(c: int, a: float, service_ms: float, q: float | None, cs2: float = 1.0) -> float:
    """The wait at quantile `q` (None: the mean) with `c` servers."""
    return mean_wait_ms(c, a, service_ms, cs2) if q is None else wait_quantile_ms(c, a, service_ms, q, cs2)


def interpolate(points: list[tuple[float, float]], b: float) -> float:
    """The value at batch `b` of a piecewise-linear law through (batch, value) `points`
    (sorted by batch): the first value below them, the last above."""
    if b <= points[0][0]:
        return points[0][1]
    for (b0, v0), (b1, v1) in zip(points, points[1:]):
        if b <= b1:
            return v0 + (b - b0) * (v1 - v0) / (b1 - b0)
    return points[-1][1]


def filled_mean(rate_per_s: float, points: list[tuple[float, float]], other: float = 0.0) -> float:
    """The least m >= 0 with m = other + rate * T(min(B, 1 + m)) / 1000, T through
    `points` (batch, call ms; the last is B's): the mean of a decode's sequences in
    flight (module docstring). h(x) = x - 1 - other - rate*T(x)/1000 is linear between
    the points and negative at x = 1, so the least root is in the first piece whose
    end has h >= 0; past B the batch is full and m = other + rate*T(B)/1000."""
    r = rate_per_s / 1000.0
    big = points[-1][0]
    knots = sorted({1.0, *(float(b) for b, _ in points if 1.0 <= b <= big)})

    def h(x: float) -> float:
        return x - 1.0 - other - r * interpolate(points, x)

    lo = knots[0]
    for hi in knots[1:]:
        if h(hi) >= 0.0:
            h0, h1 = h(lo), h(hi)
            return lo + (hi - lo) * (-h0) / (h1 - h0) - 1.0 if h1 > h0 else hi - 1.0
        lo = hi
    return other + r * points[-1][1]


def poisson_quantile(mean: float, q: float, cap: int | None = None) -> int:
    """The least k with P(N <= k) >= q for N Poisson of `mean`, or `cap` when that is
    less (terms in log space, so a large mean does not underflow)."""
    if mean <= 0:
        return 0
    acc, k = 0.0, 0
    log_m = math.log(mean)
    while cap is None or k < cap:
        acc += math.exp(-mean + k * log_m - math.lgamma(k + 1))
        if acc >= q - 1e-12 or (k > mean and acc >= 1.0 - 1e-15):
            return k
        k += 1
    return cap


def filled_batch(mean: float, batch: int, q: float | None) -> float:
    """The batch a sequence runs at, at quantile `q` of its companions in flight (a
    Poisson count of `mean`; None: the mean): min(batch, 1 + that count)."""
    if q is None:
        return min(float(batch), 1.0 + mean)
    return float(1 + poisson_quantile(mean, q, batch - 1))


# -- a placed plan as the simulator runs it (the prediction, not the sizing) ----------
#
# The MILP above sizes each op on replicas of its own, with exponential service: a
# sound bound to buy capacity with. A placed plan runs otherwise (sim/model.py): a
# pool's ops take their devices from the pool's whole count in one FIFO queue (prefill
# engines, decode steps, host calls alike), with the service variability the simulator
# draws (`--cv`, default 0: deterministic). `SharedQueue` is that queue, used to
# predict a placement at a load (planner/predict.py); it never sizes a plan.

SIMULATED_SERVICE_CV = 0.0   # the simulator's default `--cv` (sim/cli.py): the cost model's times exactly


@dataclass(frozen=True)
class SharedQueue:
    """One pool's devices as a single M/G/c queue over every op placed on it.

    Approximation (Allen-Cunneen, Poisson arrivals): with each job j arriving at rate
    lambda_j, holding tp_j devices for S_j with service cv2, a server is `width`
    devices (the tp of the pool's busy device time, weighted by it), so there are
    c = floor(devices / width) servers and a job holds one for S_j * tp_j / width.
    Then a = the servers kept busy (jobs, and `background` devices of work cut into
    steps too short to make anyone wait behind them: decode, which yields its devices
    at the next step boundary, sim/engines.py), and the wait is Erlang C's exponential
    tail with the mean residual service R = E[S^2] (1 + cv2) / (2 E[S]):
        P(W > t) = C(c, a) exp(-(c - a) t / R).
    For one job kind R = S (1 + cv2) / 2: M/M/c exactly, M/D/c Allen-Cunneen's; for
    c = 1 the mean C R / (1 - a) is Pollaczek-Khinchine's, exactly (mixtures too)."""

    servers: int
    load: float          # a, in servers
    residual_ms: float   # R
    held: float = 0.0    # of `load`, the servers decode engines keep busy (`background`)

    def tail(self) -> tuple[float, float]:
        """(C, theta): P(W > t) = C exp(-t / theta); (1, inf) when unstable. The decode
        engines' busy servers are not a Poisson load beside the jobs: an engine steps
        back to back while it has sequences, so it holds its devices whenever it is busy
        (at 7 req/s, rag's one b200 decode engine is busy 93% of the time). A job then
        waits when the jobs fill the servers the engines leave: with the engines' e busy
        servers rounded to k either way (weighed by the fraction), C is Erlang C of the
        jobs' load on c - k servers, that load scaled by (c - k) / (c - e), the share of
        the servers the engines leave to the jobs over time. Exact at both ends: engines
        busy all the time (e = k), and one server (C = the whole load, Pollaczek-
        Khinchine's). rag at 7 req/s, prompts of 205 ms at 1.44 servers on 5 b200s beside
        that engine: 6.3%, simulated 5.6%, where Erlang C of the whole load, 2.36 on 5,
        is 10.8%. theta stays R / (c - a): the engines' steps end within a step, so
        what they hold frees at the rate of the whole load's slack."""
        c, theta = tail(self.servers, self.load, self.residual_ms)
        if self.held <= 0 or c <= 0 or math.isinf(theta):
            return c, theta
        jobs, low = self.load - self.held, math.floor(self.held)
        frac, left = self.held - low, self.servers - self.held
        c = sum(w * (erlang_c(self.servers - k, jobs * (self.servers - k) / left) if k < self.servers else 1.0)
                for k, w in ((low, 1.0 - frac), (low + 1, frac)) if w > 0)
        return c, theta

    def wait_ms(self, q: float | None) -> float:
        """The wait at quantile `q` (None: the mean); inf when the queue is unstable."""
        return path_wait_ms([(1.0, *self.tail())], q)


def tail(c: int, a: float, residual_ms: float) -> tuple[float, float]:
    """(C, theta) of an M/G/c wait by Allen-Cunneen, `residual_ms` being E[S^2](1 + cv2)
    / (2 E[S]): it waits with Erlang C's probability C(c, a), then an exponential time
    of mean theta = residual / (c - a). (0, 0) without load, (1, inf) when unstable."""
    if a <= 0 or residual_ms <= 0:
        return 0.0, 0.0
    if a >= c:
        return 1.0, math.inf
    return erlang_c(c, a), residual_ms / (c - a)


def shared_queue(jobs: list[tuple], devices: int, cv2: float, background: float = 0.0) -> SharedQueue:
    """The SharedQueue of a pool of `devices` serving `jobs`, each (executions per
    second, service ms, tp) or (..., mean square service ms^2) where service varies
    (prefill batches: BatchLaw.hold), beside `background` devices kept busy without
    queueing."""
    busy = sum(j[0] * j[1] * j[2] for j in jobs) / 1000.0    # devices the jobs keep busy
    width = sum(j[0] * j[1] * j[2] * j[2] for j in jobs) / 1000.0 / busy if busy > 0 else 1.0
    servers = max(1, math.floor(devices / width + 1e-9))
    second = sum(j[0] * (j[3] if len(j) > 3 else j[1] ** 2) * (j[2] / width) ** 2
                 for j in jobs) * (1.0 + cv2)   # lambda E[S^2]
    load = (busy + background) / width
    return SharedQueue(servers, load, second / (2000.0 * load) if load > 0 else 0.0, background / width)


# the kinds the simulator runs as continuous-batching decode engines (sim/plan.py
# DECODE_KINDS), the only ops a pool's jobs crowd out of their devices
ENGINE_KINDS = ("llm.decode", "moe.expert_decode")


def crowding(jobs: float, room: float, service_ms: float, step_ms: float, call_ms: float,
             share: float = 1.0) -> tuple[float, float, float]:
    """The queue visits (count, C, theta; path_wait_ms) a decode call of `call_ms` makes
    on a pool where jobs (prefill batches, host calls) of `service_ms` keep `jobs`
    devices busy on average, `room` of its devices being left to them while its
    engines hold theirs. The simulator's engines give their devices up at the next
    step boundary whenever someone waits for the pool and ask again at the FIFO
    queue's back (sim/engines.py DecodeEngine.yield_soon, resources.py Pool.ask): while
    more jobs are in the pool than its room holds (a Poisson count: M/G/inf occupancy)
    an engine gets a step in only between a job ending and the next one arriving.
    Such a spell lasts about until one of the room's jobs ends, D = service / (room +
    1), and the engine notices it at its next step boundary (uniform over a step): it
    loses E[(X - U)+] = D (D / step)(1 - exp(-step / D)) of an exponential spell X, so
    jobs short beside a step cost it little. `share`: the part of the shortage that
    falls on this engine (the prediction's engines pass it on to one another). As
    visits: the call's spells of D, each stalled with that chance. Sizing charges it on
    a job's own replicas (Instance.crowded), prediction on its pool's one queue
    (predict.py); checked against a strict-FIFO pool with a step-yielding engine
    simulated in test_predict.py."""
    if jobs <= 0 or call_ms <= 0 or service_ms <= 0:
        return 0.0, 0.0, 0.0
    k, term, below = math.floor(room + 1e-9), math.exp(-jobs), 0.0
    for n in range(k + 1):   # P(N <= room)
        below += term
        term *= jobs / (n + 1)
    spell = service_ms / (k + 1.0)
    noticed = 1.0 if step_ms <= 0 else spell / step_ms * -math.expm1(-step_ms / spell)
    stalled = max(0.0, 1.0 - below) * noticed * share
    if stalled <= 0:
        return 0.0, 0.0, 0.0
    return call_ms / spell, min(1.0, stalled), spell


def mixed_step(calls: list[tuple[float, float]]) -> float:
    """The step time of a decode batch shared by several calls (differing in context),
    each (mean sequences of it in the batch, its own step time at the batch's size):
    the mean over the batch's sequences, which is how the simulator times such a step
    (sim/engines.py). A call's TBT is then its batch's, not its own at a full batch of
    it: voice's follow-up answer (8.5 ms alone at 256) shares its engines with the
    first answer (4.4 ms)."""
    total = sum(w for w, _ in calls)
    return sum(w * s for w, s in calls) / total if total > 0 else calls[0][1]


class BatchLaw:
    """The batch a prompt runs in at prefill engines that batch (sim/engines.py
    Prefiller: an engine granted its devices runs every queued prompt that fits the
    token `budget` as one batch, and each gives its first token when the batch is
    done), on a pool queue (SharedQueue) where a prompt waits with probability `c`, at
    `servers` servers: `stepping` of them held by decode engines that step every
    `step_ms`, the others by jobs of mean residual service `residual_ms` (R).

    Its wait: the queue ahead of it goes in one batch, so a prompt that waits waits for
    one server to free, the least of the busy servers' residual times: a job's taken
    uniform on [0, 2R] (a deterministic service's, the simulator's default), a decode
    engine's on [0, step] (it gives the pool up at its next step boundary,
    sim/engines.py): P(W > t | W > 0) = (1 - t / 2R)^(servers - stepping)
    (1 - t / step)^stepping; without decode, of mean 2R / (servers + 1). Beside decode,
    a share `full` of the prompts that wait find every server a job's (the engines gave
    theirs up already) and wait for the first of `servers` jobs to end, (1 - t / 2R)^
    servers: rag at 7.75 req/s on 5 b200s (prefill 205 ms, one decode engine), 18% of
    the waits in simulation last longer than a step (20 ms), and 42% of those prompts
    are batched with another, against 8% of the short ones. Not Erlang C's
    exponential of mean R / (servers - a), which counts the queue ahead served one by
    one (against batching engines simulated, test_predict.py: rag's prompts, 4 engines
    of 205 ms, 41 ms; react's, 2 engines of 80 ms in batches of up to 8, 27 ms; Erlang
    C's 37 and 33). A decode's step bounds the wait: rag at 6 req/s on 5 B200s shared
    by its prefill and decode, TTFT simulated at 445 ms, is predicted at 443 (541 with
    every server's residual on [0, 2R], R the pool queue's).

    Its batch: the prompts that reached its engines since the batch's oldest one did, a
    window W + U, U the oldest one's wait so far (another draw of the same law); each of
    `streams` (prompts per ms, tokens) brings a Poisson count in it (their tokens on a
    lattice: a compound Poisson law by Panjer's recursion, lumped at the budget). Its
    first token comes X = W + T(n + K) - T(n) later than alone, T the batch time by
    total tokens (`table`: (tokens, ms), the prompt's own length first), n its tokens,
    K theirs; the batch's time is the prompt's own op's table, as if its companions were
    of its op (the simulator weights each prompt's op's table by its tokens). The count
    is discrete where one more prompt is a cliff: rag's 4096-token prompts (8192
    budget) at 6 req/s wait at 4%, and a batch of two takes 406 ms against 205, so the
    p99 sits in the 1.4% of prompts batched with one more. `own` False: the prompt took
    that wait at its input, an op on the same pool just before it (an MoE gate:
    react's prompts queue for the a100 there, and reach the prefill engines as the
    engine that let the pool go frees), so X is the batch's extra alone, over the same
    window."""

    def __init__(self, c: float, servers: int, residual_ms: float, table: tuple[tuple[float, float], ...],
                 streams: list[tuple[float, float]], budget: float, own: bool = True,
                 stepping: float = 0.0, step_ms: float = 0.0, full: float = 0.0):
        self.c, self.own, self.table = c, own, table
        stepping = min(float(servers), stepping) if step_ms > 0 else 0.0
        whole = 2.0 * residual_ms
        full = min(1.0, max(0.0, full)) if stepping > 0 else 0.0
        self.span = span = whole if full > 0 else min(whole, step_ms) if stepping > 0 and servers - stepping > 0 else (
            step_ms if stepping > 0 else whole)
        n1, t1 = table[0]
        self.n1, self.t1 = n1, t1
        room = budget - n1
        rate = sum(r for r, _ in streams)
        if room > 0 and rate > 0:
            unit = float(functools.reduce(math.gcd, [max(1, int(round(n))) for _, n in streams]))
            if room / unit > _BATCH_CELLS:
                unit = room / _BATCH_CELLS
            top = int(math.floor(room / unit + 1e-9)) + 1   # cells 0 .. top-1 fit; `top`: at the budget
            jump = [0.0] * (top + 1)                         # a prompt's tokens in cells: P(size = y)
            for r, n in streams:
                jump[min(top, max(1, int(round(n / unit))))] += r / rate
            self.tokens = [n1 + k * unit for k in range(top)] + [float(budget)]
        else:                                                # it runs alone
            top, jump, rate, self.tokens = 0, [0.0], 0.0, [n1]
        self.top = top
        self.extra = [interpolate(list(table), n) - t1 for n in self.tokens]
        steps = _WAIT_STEPS
        self.h = h = span / steps
        grid = [k * h for k in range(steps + 1)]
        jobs = servers - stepping

        def stepped(w: float) -> float:   # P(W > w | a wait beside stepping engines)
            out = max(0.0, 1.0 - w / whole) ** jobs if jobs > 0 else 1.0
            return out * (max(0.0, 1.0 - w / step_ms) ** stepping if stepping > 0 else 1.0)

        def filled(w: float) -> float:    # P(W > w | a wait with every server a job's)
            return max(0.0, 1.0 - w / whole) ** servers

        def surv(w: float) -> float:   # P(W > w | a wait)
            return (1.0 - full) * stepped(w) + (full * filled(w) if full > 0 else 0.0)

        def dens_at(w: float) -> float:
            d = (jobs / (whole - w) if jobs > 0 and w < whole else 0.0) + \
                (stepping / (step_ms - w) if stepping > 0 and w < step_ms else 0.0)
            out = (1.0 - full) * d * stepped(w) if d > 0 else 0.0
            if full > 0 and w < whole:
                out += full * servers / (whole - w) * filled(w)
            return out
        dens = [dens_at(w) for w in grid]
        weights = [h * (0.5 if k in (0, steps) else 1.0) * dens[k] for k in range(steps + 1)]
        poi = [_panjer(jump, top, math.exp(-rate * w), 0.0, rate * w) for w in grid]   # K in a window w
        back = [sum(weights[j] * poi[j][k] for j in range(steps + 1)) for k in range(top + 1)]   # in U
        total = sum(back)
        back = [x / total for x in back]
        cells = []                                           # per w: P(K = k) in the window w + U
        for pk in poi:
            conv = [sum(pk[i] * back[k - i] for i in range(k + 1)) for k in range(top)]
            conv.append(max(0.0, 1.0 - sum(conv)))
            cells.append(conv)
        # tails[k][j]: the integral from grid[j] to 2R of dens(w) P(K = k | w) dw (trapezoid)
        self.tails = []
        for k in range(top + 1):
            acc, col = 0.0, [0.0] * (steps + 1)
            for j in range(steps - 1, -1, -1):
                acc += 0.5 * h * (dens[j] * cells[j][k] + dens[j + 1] * cells[j + 1][k])
                col[j] = acc
            self.tails.append(col)
        norm = sum(t[0] for t in self.tails)
        self.share = [t[0] / norm for t in self.tails]      # P(K = k | a wait)
        self.norm = norm
        self.mean_wait = sum(h * (0.5 if k in (0, steps) else 1.0) * surv(w) for k, w in enumerate(grid))

    def over(self, x: float) -> float:
        """P(X > x | the prompt waits)."""
        out, span, h, steps = 0.0, self.span, self.h, _WAIT_STEPS
        for k, extra in enumerate(self.extra):
            a = x - extra if self.own else (0.0 if extra > x else span)
            if a <= 0:
                out += self.tails[k][0]
            elif a < span:
                j = min(steps - 1, int(a / h))
                f = a / h - j
                out += self.tails[k][j] * (1.0 - f) + self.tails[k][j + 1] * f
        return out / self.norm

    def theta(self, q: float | None) -> float:
        """The theta whose exponential tail C exp(-t / theta) has X's quantile at `q`
        (C ln(C / (1 - q)): one visit's quantile, exactly); X's mean given a wait when
        C <= 1 - q or `q` is None."""
        mean = (self.mean_wait if self.own else 0.0) + sum(e * p for e, p in zip(self.extra, self.share))
        c = self.c
        if q is None or c <= 1.0 - q:
            return mean
        target = (1.0 - q) / c
        return _bisect(lambda t: self.over(t) - target, mean) / math.log(c / (1.0 - q))

    def hold(self) -> tuple[float, float]:
        """(mean, mean square) of a prompt's share of device time: its batch's time T(N)
        (its square) times its tokens' share n / N of the batch, which runs alone when it
        does not wait. What the pool's queue counts for the prompt's op: batches, not
        prompts (a batch takes less than its prompts one by one)."""
        one = sum(p * interpolate(list(self.table), n) * self.n1 / n for p, n in zip(self.share, self.tokens))
        two = sum(p * interpolate(list(self.table), n) ** 2 * self.n1 / n for p, n in zip(self.share, self.tokens))
        return (1.0 - self.c) * self.t1 + self.c * one, (1.0 - self.c) * self.t1 ** 2 + self.c * two


_WAIT_STEPS = 200   # the wait's grid (BatchLaw)
_BATCH_CELLS = 64   # the token lattice's cells up to the budget (batched_wait)


def _panjer(jump: list[float], top: int, p0: float, a: float, b: float) -> list[float]:
    """P(S = k), k = 0 .. top (the last: S >= top), of a sum of a count N of jumps of
    law `jump` (cells 1 .. top) where P(N = m) / P(N = m - 1) = a + b / m (Panjer's
    class: Poisson a = 0, b = mean; geometric b = 0) and P(N = 0) = p0."""
    out = [p0] + [0.0] * top
    for k in range(1, top):
        out[k] = sum((a + b * y / k) * jump[y] * out[k - y] for y in range(1, k + 1))
    out[top] = max(0.0, 1.0 - sum(out[:top]))
    return out


def path_wait_ms(visits: list[tuple[float, float, float]], q: float | None) -> float:
    """The wait at quantile `q` (None: the mean) of a path that visits queues, each
    (times visited, C: probability of waiting, theta: mean wait of one that waits,
    the tail P(W > t) = C exp(-t / theta) of SharedQueue), the visits' waits taken
    independent. One visit that may wait: its own quantile, theta ln(C / (1 - q)),
    exactly. Else the sum is an atom at 0, P(no wait) = prod (1 - C)^count, and the
    rest (the sum given some visit waits) a Gamma matched on its exact mean and
    variance (each wait's: C theta and (2 C - C^2) theta^2). Not a sum of tails (each
    visit at its own p99 summed: 3x the simulated tail of three queues at 5% waiting),
    nor their union, P(sum W > t) ~ sum of count C exp(-t / theta), which is exact as
    the C go to 0 but 19-35% under at the p99 when visits often wait (3 at C = 0.5,
    10 at 0.2: the waits add up); never below the quantile of the largest wait (a
    bound: one rare long wait's tail, which the union has right and a Gamma with
    cv > 1 undershoots by 5%). Within 5% of a Monte Carlo at the p99 on both kinds
    (test_predict.py). 0 when a share q of requests waits nowhere."""
    if any(math.isinf(t) and n > 0 for n, _, t in visits):
        return math.inf
    waits, mean, some, gamma = _path_law(visits)
    if q is None or mean <= 0:
        return mean
    if q >= 1.0:
        return math.inf   # every wait that can happen: the exponential tails have no end
    tail = 1.0 - q
    if len(waits) == 1 and waits[0][0] == 1.0:
        _, c, t = waits[0]
        return t * math.log(c / tail) if c > tail else 0.0
    if some <= tail:
        return 0.0
    m1 = mean / some
    if gamma is None:
        return m1
    shape, scale = gamma
    fit = _bisect(lambda t: some * _gamma_q(shape, t / scale) - tail, m1)
    most = _bisect(lambda t: 1.0 - math.prod((1.0 - c * math.exp(-t / th)) ** n for n, c, th in waits) - tail, m1)
    return max(fit, most)


def path_over(visits: list[tuple[float, float, float]], w: float) -> float:
    """P(the waits of path_wait_ms's visits sum past `w`), by the same law (the larger of
    its Gamma fit's and its union's tail), so that path_over(v, path_wait_ms(v, q)) is
    1 - q: several calls' tails added up (predict.py: a request's TBT is its worst
    call's)."""
    if any(math.isinf(t) and n > 0 for n, _, t in visits):
        return 1.0
    waits, mean, some, gamma = _path_law(visits)
    if mean <= 0:
        return 0.0
    if len(waits) == 1 and waits[0][0] == 1.0:
        _, c, t = waits[0]
        return c * math.exp(-max(0.0, w) / t)
    if some <= 0:   # chances below float's resolution: their union
        return min(1.0, sum(n * c * math.exp(-max(0.0, w) / t) for n, c, t in waits))
    if w <= 0:
        return some
    if gamma is None:
        return some if w < mean / some else 0.0
    shape, scale = gamma
    return max(some * _gamma_q(shape, w / scale),
               1.0 - math.prod((1.0 - c * math.exp(-w / th)) ** n for n, c, th in waits))


def worst_call(paths: list[tuple[float, float, list[tuple[float, float, float, list]]]], q: float) -> float:
    """The quantile q of the worst of a request's decode calls' TBTs: paths (probability,
    the TBT no call goes below, calls (calls made, TBT without stalls, call ms, stall
    visits)), a call's TBT stretched by its stalls' sum over its time (path_over).
    The calls' tails add up (their union: exact as they grow rare; the calls are taken
    independent); a path whose least TBT is past x counts whole. Checked against a
    Monte Carlo of independent calls in test_predict.py."""
    total = sum(p for p, _, _ in paths)

    def over(x: float) -> float:
        out = 0.0
        for p, least, calls in paths:
            out += p if x < least else p * min(1.0, sum(
                n * path_over(v, (x / tbt - 1.0) * ms) for n, tbt, ms, v in calls))
        return out / total - (1.0 - q)

    lo = min(least for _, least, _ in paths)
    if over(lo) <= 0:
        return lo
    top = max([lo, 1.0] + [least for _, least, _ in paths] + [tbt for _, _, calls in paths for _, tbt, _, _ in calls])
    return lo + _bisect(lambda d: over(lo + d), top)


def _path_law(visits: list[tuple[float, float, float]]):
    """The visits that wait, their summed mean wait, P(some visit waits) and the Gamma
    (shape, scale) of the sum given some wait (None when it does not spread)."""
    waits = [(n, c, t) for n, c, t in visits if n > 0 and c > 0 and t > 0]
    mean = sum(n * c * t for n, c, t in waits)
    some = 1.0 - math.prod((1.0 - c) ** n for n, c, _ in waits)   # P(some visit waits)
    if mean <= 0 or some <= 0:
        return waits, mean, some, None
    var = sum(n * (2.0 * c - c * c) * t * t for n, c, t in waits)
    m1 = mean / some                                # mean and variance given some wait
    v1 = (var + mean * mean) / some - m1 * m1
    return waits, mean, some, ((m1 * m1 / v1, v1 / m1) if v1 > 0 else None)


def _bisect(over, hi: float) -> float:
    """The t where `over` (falling in t) crosses 0, > 0 at t = 0: `hi` doubled until
    over(hi) <= 0, then bisected to float precision (deterministic)."""
    while over(hi) > 0:
        hi *= 2.0
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if over(mid) > 0 else (lo, mid)
    return hi


def _gamma_q(k: float, x: float) -> float:
    """The regularised upper incomplete gamma Q(k, x) = P(Gamma(k, 1) > x), by its
    power series below x = k + 1 and Legendre's continued fraction above (evaluated by
    Lentz's method), where each converges fast; plain floats so that predictions are
    deterministic and need no scipy."""
    if x <= 0:
        return 1.0
    front = math.exp(k * math.log(x) - x - math.lgamma(k))
    if x < k + 1.0:
        term = total = 1.0 / k          # P(k, x) = front * sum x^n / (k (k+1) ... (k+n))
        a = k
        for _ in range(10_000):
            a += 1.0
            term *= x / a
            total += term
            if term < total * 1e-17:
                break
        return max(0.0, 1.0 - front * total)
    tiny = 1e-300                       # Q = front / (x+1-k - 1(1-k)/(x+3-k - 2(2-k)/(x+5-k - ...)))
    b = x + 1.0 - k
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - k)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return front * h
