"""What a placed plan does at a load, as the simulator runs it: the planner's prediction.

The MILP sizes a plan with a deliberately sound model (queueing.py: replicas dedicated
to each op, exponential service, no wait for host work, a decode counting every
same-model decode that could share its devices). A plan, once placed, runs otherwise
(sim/model.py), and its prediction at a load models that instead, from the same
placement (each op's option, pool and replicas) and the same evaluator
(Instance.evaluate), with four changes to each op's call:

- Waits: each pool is one queue over its devices (queueing.SharedQueue: M/G/c,
  Allen-Cunneen, with the simulator's service cv; the decode engines' busy devices
  held, not a Poisson load beside the jobs) for every op placed on it, host
  work on a CPU pool included, its wait charged on the path like any other; a
  request's run of host calls there waits once, as one job (_runs). A decode
  queues for a batch slot of its engines (under load its replicas, plus what no
  replicas hold: _engines) and its steps count as busy devices of the pool's queue.
- Decode batches: a decode fills its batch with the sequences of the same-model
  decodes placed on the same pool only (the simulator's engines are per pool), and
  a step of such a mixed batch takes the mean of its calls' step times
  (queueing.mixed_step), as the simulator's engines do.
- Prefill batches (queueing.BatchLaw; the batch's time from the manifest's prefill
  table, `Prefill`): a prompt that waits waits for one device to free (the queue
  ahead of it goes in the same batch; a decode engine frees its device at its next
  step boundary, unless the jobs hold every device: then a job's end, with the
  chance Erlang C of the jobs alone gives), runs in one batch with the prompts that reached
  its engines over its batch's window (a discrete count, up to the simulator's token
  budget) and gives its first token when the batch is done; a prompt whose input
  queued for the same pool just before it (an MoE gate) waited there. The pool's
  queue counts the prefill ops at their batches' device time, for the batches its
  waits form (a fixed point, _FIXED_POINT_STEPS).
- Pool sizes: the plan's devices (`devices`); without a load clause the pools' whole
  counts, as the simulator runs such a plan.
- Crowded decode engines (queueing.crowding): an engine gives its devices up at a
  step boundary whenever someone waits for the pool, so while the pool's jobs
  (prefill batches, other ops; a Poisson count of the devices they keep busy) pass the
  room its engines leave them, a decode call stalls until a job ends: a loss on its
  call's time (visits of the pool's queue on its path), on its TBT (their sum at
  the TBT term's quantile) and on its first token (a sequence joining a stalled
  engine waits for it: one visit).

A request's TBT is its worst decode call's, the crowded calls' tails added up
(_request_tbt, queueing.worst_call), not the largest call's own quantile.

Quantiles are the path's, not per call as in the sizing model: each call is charged
its mean wait, and the waits along a scenario's longest path (at the mean waits) are
taken at the term's quantile as one sum (queueing.path_wait_ms: an atom at 0 and a
Gamma fit), never below the same calls' schedule without waits; a prompt's visit is
its wait and batch together, an exponential tail matched at the TTFT term's quantile
(beside a long wait elsewhere on the path it spreads a batch's cliff: over).
Left out: FIFO head-of-line blocking of wide jobs, the spells a crowded engine's
stalls come in (a heavily crowded call's loss has a longer tail than independent
stalls: docs/planner.md), transfers sharing a link. Split ops keep the sizing model's times; their
parts' calls still load the queues of the pools they run on.
"""

from __future__ import annotations

import dataclasses
import math

from . import queueing
from .instance import Instance, Metrics, statistic


def predicted(inst: Instance, choice: list[int], devices: dict[str, int],
              cv: float = queueing.SIMULATED_SERVICE_CV, prefill: Prefill | None = None,
              replica_engines: bool = True) -> Metrics:
    """`choice` (one Instance choice per op) evaluated as the simulator runs it (module
    docstring): Instance.evaluate with each call at its mean wait, then the latency
    and TTFT of every scenario given the tail of the waits on its path. `prefill`: the
    prefill ops' batch times and the token budget (None: prompts run one a batch).
    `replica_engines`: decodes run on their replicas' engines (_engines; a plan made
    under a load clause), else one per tp devices of the pool."""
    timed, tails, crowds, tbt_laws = simulated(inst, choice, devices, cv, prefill, replica_engines)
    m = inst.evaluate(timed)
    # The same calls without their waits: no request is faster, so each scenario's
    # figure is at least their schedule's. The excess below follows the path longest at
    # the mean waits; at a quantile where those waits vanish it can fall below another
    # path that never waited.
    bare = list(timed)
    for i in tails:
        bare[i] = inst.add_choice(dataclasses.replace(inst.choices[timed[i]], wait_ms=0.0, ttft_wait_ms=0.0),
                                  timed[i])
    q, q_ttft = queueing.wait_level(inst.q_e2e), queueing.wait_level(inst.q_ttft)
    e2e, ttft = [], []
    for s, (prob, counts, ecounts) in enumerate(inst.scen):
        start, finish = inst.longest(timed, m.transfers, counts, ecounts)
        b_start, b_finish = inst.longest(bare, m.transfers, counts, ecounts)
        last = max(range(len(finish)), key=lambda i: (finish[i], -i), default=None)
        visits = _path(inst, m.transfers, start, finish, counts, ecounts, last, tails, crowds)
        e2e.append((prob, max(max(finish, default=0.0) + _excess(visits, q), max(b_finish, default=0.0))))
        chain = inst.first[s]
        if chain is not None:
            ops = chain[0]
            before = _path(inst, m.transfers, start, finish, counts, ecounts, ops[0], tails)
            if ops[0] in tails and counts[ops[0]] > 0:
                before = before[:-1]   # the chain's ops are each one call: counted below
            head = before + [(1.0, *tails[i]) for i in ops if i in tails] + [(1.0, *crowds[i][1:]) for i in ops
                                                                              if i in crowds]
            ttft.append((prob, max(inst.first_token_ms(timed, m.transfers, start, chain) + _excess(head, q_ttft),
                                   inst.first_token_ms(bare, m.transfers, b_start, chain))))
    m.e2e_ms = statistic(e2e, inst.q_e2e)
    m.ttft_ms = statistic(ttft, inst.q_ttft)
    if tbt_laws and m.tbt_ms is not None and inst.q_tbt is not None:
        m.tbt_ms = _request_tbt(inst, timed, tbt_laws)
    return m


def _request_tbt(inst: Instance, timed, tbt_laws: dict) -> float:
    """A request's TBT at the TBT term's quantile, as the simulator measures it: its
    worst decode call's mean gap (sim/model.py), so the tails of its crowded calls
    (each: TBT without stalls, call time, stall visits; `simulated`) add up
    (queueing.worst_call), where each call's own quantile leaves the request's out
    (supervisor at 3 req/s in simulation: query.decode's p99 11.74 ms, notes.decode's
    12.14, the request's 12.44). Per control-flow path for a bound on every path (their
    largest), else over the paths' mixture."""
    q = queueing.wait_level(inst.q_tbt)
    paths = []   # (probability, TBT without stalls, [(calls, TBT without stalls, call ms, visits)])
    for prob, counts, _ in inst.scen:
        ops = [j for j in inst.tbt_ops if counts[j] > 0]
        if prob <= 0 or not ops:
            continue
        base = max(tbt_laws[j][0] if j in tbt_laws else inst.choices[timed[j]].tbt or 0.0 for j in ops)
        paths.append((prob, base, [(counts[j], *tbt_laws[j]) for j in ops if j in tbt_laws]))

    if inst.q_tbt >= 1.0:
        return max(queueing.worst_call([path], q) for path in paths)
    return queueing.worst_call(paths, q)


def _excess(visits: list[tuple[float, float, float, float]], q: float | None) -> float:
    """What a path's waits add at quantile `q` over their means, already on the path:
    queueing.path_wait_ms of (count, C, theta) less the sum of count x mean wait."""
    total = queueing.path_wait_ms([v[:3] for v in visits], q)
    return math.inf if math.isinf(total) else total - sum(n * w for n, _, _, w in visits)


def _path(inst: Instance, transfers, start, finish, counts, ecounts, last, tails, crowds=None) -> list:
    """The queue visits (count, C, theta, mean wait) of the longest path ending with op
    `last` in one scenario's schedule (Instance.longest): walked back from `last`
    through the predecessor whose finish and transfer make its start; a crowded
    decode's calls (`crowds`) visit their pool's queue too."""
    out, i = [], last
    while i is not None:
        if i in tails and counts[i] > 0:
            out.append((float(counts[i]), *tails[i]))
        if crowds and i in crowds and counts[i] > 0:
            out.append((counts[i] * crowds[i][0], *crowds[i][1:]))
        nxt = None
        for k in inst.pred[i]:
            u = inst.edges[k].u
            if start[i] > 0 and finish[u] + ecounts[k] * transfers[k][0] >= start[i] - 1e-9 * max(1.0, start[i]):
                nxt = u
                break
        i = nxt
    out.reverse()
    return out


# tokens per prefill batch, as serving engines cap a step's prompt tokens (vLLM's
# max_num_batched_tokens); the simulator batches to it (sim/model.py, docs/simulate.md)
PREFILL_BUDGET_TOKENS = 8192


@dataclasses.dataclass(frozen=True)
class Prefill:
    """How the simulator batches prompts (sim/engines.py Prefiller): per prefill op id,
    a batch's time by its total prompt tokens (the manifest's table: (tokens, ms) at 1,
    2, 4, ... prompts of the op's length, the first one prompt), and the token budget
    of a batch."""

    tables: dict[str, tuple[tuple[float, float], ...]]
    budget: int


def simulated(inst: Instance, choice: list[int], devices: dict[str, int],
              cv: float = queueing.SIMULATED_SERVICE_CV, prefill: Prefill | None = None,
              replica_engines: bool = True) -> tuple[tuple[int, ...], dict[int, tuple], dict[int, tuple],
                                                     dict[int, tuple]]:
    """`choice` re-timed as the simulator runs it: new choices appended to `inst`
    (Instance.add_choice) with each op's mean wait and decode batch, their indices,
    per op that queues, its wait's tail (C, theta, mean: queueing.tail), and per
    decode crowded out of its pool by the jobs there, the visits to the pool's queue
    one call makes (count, C, theta, mean: queueing.crowding), and per such decode with a
    TBT, its TBT without the stalls, its call's time and those visits (_request_tbt)."""
    cv2 = cv * cv
    ch = [inst.choices[k] for k in choice]
    decode = set(inst.tbt_ops)
    engines = set(inst.engine_ops)
    by_site: dict[int, list[int]] = {}
    parts: dict[int, list[tuple[float, float, int]]] = {}   # split ops' parts: jobs on their pools
    for i, c in enumerate(ch):
        if c.parts:
            for pt in c.parts:
                if pt.option.busy_ms > 0:
                    parts.setdefault(pt.site, []).append((inst.rate * inst.ops[i].weight * pt.fraction,
                                                          pt.option.busy_ms, pt.option.tp))
        elif not inst.sites[c.site].implicit:
            by_site.setdefault(c.site, []).append(i)
    runs = _runs(inst, ch, by_site, decode, prefill)
    new, tails, crowds, tbt_laws = list(choice), {}, {}, {}
    for j, ops in sorted(by_site.items()):
        site = inst.sites[j]
        n = max([devices.get(site.name, 0)] + [ch[i].option.tp for i in ops])
        jobs, background, timed, slot, steps = list(parts.get(j, ())), 0.0, {}, {}, 0.0
        for i in ops:
            o, rate = ch[i].option, inst.rate * inst.ops[i].weight
            if i in decode and o.batch > 1:
                mates = {x: _flight(inst, x, ch[x].option) for x in ops
                         if x != i and x in decode and _shares(inst, i, x, ch)}
                other = sum(mates.values())
                ms, tbt, step, b_e = inst.served(i, o, other)
                pts = inst.batch_points(i, o)
                if mates and tbt is not None:   # its steps are its engines' mixed batches' (queueing.mixed_step)
                    own = queueing.interpolate(inst.batch_points(i, o, "tbt_ms"), b_e)
                    mix = queueing.mixed_step([(queueing.filled_mean(rate, pts, other) - other, own)] + [
                        (f, queueing.interpolate(inst.batch_points(x, ch[x].option, "tbt_ms"), b_e))
                        for x, f in mates.items() if ch[x].option.tbt_ms is not None])
                    ms, tbt, step = ms * mix / own, tbt * mix / own, None if step is None else step * mix / own
                timed[i] = (ms, tbt, step, b_e)
                b = queueing.filled_batch(queueing.filled_mean(rate, pts, other), o.batch, None)
                busy = rate * queueing.interpolate(pts, b) / b * o.tp / 1000.0
                background += busy
                steps += busy * (tbt if tbt is not None else ms)
            elif o.busy_ms > 0 and runs.get(i, i) == i:   # a run of visits: one job (_runs)
                jobs.append((rate, sum(ch[x].option.busy_ms for x in ops if runs.get(x, x) == i), o.tp))
                slot[i] = len(jobs) - 1
        # prompts that wait run in batches, which hold the pool less than their prompts
        # one by one: the queue counts each prefill op at its prompts' share of their
        # batches (BatchLaw.hold), for the batches the queue's waits form (a fixed point,
        # from the prompts alone)
        pool = queueing.shared_queue(jobs, n, cv2, background)
        laws: dict[int, queueing.BatchLaw] = {}
        for _ in range(_FIXED_POINT_STEPS if prefill is not None else 0):
            held = _held(pool, jobs, n, cv2, background, steps)
            laws = {i: law for i in ops if i in slot and (law := _batch_law(inst, i, ops, ch, prefill, pool, held))}
            if not laws:
                break
            for i, law in laws.items():
                rate, _, tp = jobs[slot[i]][:3]
                jobs[slot[i]] = (rate, *law.hold()[:1], tp, law.hold()[1])
            pool = queueing.shared_queue(jobs, n, cv2, background)
            if math.isinf(pool.tail()[1]):
                laws = {}
                break
        for i in ops:
            c, o = ch[i], ch[i].option
            if i in timed:
                # a batch slot of the engines it shares with its mates, each of the least
                # batch of their ops (_engines)
                group = [i] + [x for x in ops if x != i and x in timed and _shares(inst, i, x, ch)]
                k = _engines(ch, j, ops, group, n) if replica_engines else max(1, n // o.tp)
                slots = k * min(ch[x].option.batch for x in group)
                pw, theta = queueing.shared_queue(
                    [(inst.rate * inst.ops[x].weight, ch[x].option.busy_ms * ch[x].option.batch, 1) for x in group],
                    slots, cv2).tail()
                ms, tbt, step, b_e = timed[i]
                if jobs and i in engines:   # each job that waits for the pool stalls the engines (queueing.crowding)
                    service = sum(j[0] * j[1] for j in jobs) / sum(j[0] for j in jobs)
                    # the devices the jobs and the engines keep busy against what its own leave, in
                    # devices (the pool's queue counts servers of its jobs' mean width, `SharedQueue.load`)
                    busy = sum(j[0] * j[1] * j[2] for j in jobs) / 1000.0 + background
                    count, cw, th = queueing.crowding(max(0.0, busy - o.tp), n - o.tp, service, tbt or 0.0, ms,
                                                      min(1.0, o.tp / background) if background > 0 else 1.0)
                    if count > 0 and cw > 0 and th > 0:
                        crowds[i] = (count, cw, th, cw * th)
                        if tbt is not None:
                            tbt_laws[i] = (tbt, ms, [(count, cw, th)])
                            tbt *= 1.0 + queueing.path_wait_ms([(count, cw, th)], queueing.wait_level(inst.q_tbt)) / ms
                c = dataclasses.replace(c, run_ms=ms, run_tbt_ms=tbt, first_step_ms=step, run_batch=b_e)
            elif o.busy_ms > 0 and runs.get(i, i) != i:   # waits only at its run's head
                new[i] = inst.add_choice(dataclasses.replace(c, wait_ms=0.0, ttft_wait_ms=0.0), choice[i])
                continue
            elif o.busy_ms > 0:
                pw, theta = pool.tail()
                if i in laws:
                    held = _held(pool, jobs, n, cv2, background, steps)
                    theta = _batch_law(inst, i, ops, ch, prefill, pool, held).theta(queueing.wait_level(inst.q_ttft))
            else:
                continue
            mean = pw * theta if theta > 0 else 0.0
            tails[i] = (pw, theta, mean)
            lost = crowds[i][0] * crowds[i][3] if i in crowds else 0.0
            # a sequence joining a crowded engine waits for it to get its devices back
            # before its first token: one visit of the engine's stalls
            joined = crowds[i][3] if i in crowds else 0.0
            new[i] = inst.add_choice(dataclasses.replace(c, wait_ms=mean + lost, ttft_wait_ms=mean + joined),
                                     choice[i])
    return tuple(new), tails, crowds, tbt_laws


def _engines(ch, j: int, ops: list[int], group: list[int], n: int) -> int:
    """The decode engines `group` (one model's decodes at one tp on site j) runs on in a
    plan made under load: the replicas the placement gives them (the servers a
    deployment starts), plus one per `tp` of the pool's `n` devices that no op's
    replicas hold (a repair's growth). Never more than n // tp, at least one."""
    tp = ch[group[0]].option.tp
    held = sum(ch[x].replicas * ch[x].option.tp for x in ops) + sum(
        pt.replicas * pt.option.tp for c in ch for pt in c.parts if pt.site == j)
    own = sum(ch[x].replicas for x in group) + max(0, n - held) // tp
    return max(1, min(own, n // tp))


def _runs(inst: Instance, ch, by_site: dict[int, list[int]], decode: set[int],
          prefill: Prefill | None) -> dict[int, int]:
    """Runs of one request's host calls on a CPU pool: op -> its run's head. An op is
    in the run of its inputs when they are all in one run on its pool, at its tp and
    executions, and none waits without the pool after its busy time (a tool's remote
    wait): it then asks for the pool the moment its request's previous call there
    lets go. Two runs an accelerator call apart stay two; accelerator pools' ops
    (prefill batched, decode slots) keep a visit each. The pool's queue takes a run as
    one job of its summed busy time, waiting once, at its head. Approximation: under
    the simulator's FIFO a member rejoins the queue's back, so work arriving during the
    run gets ahead of its later members, which this leaves out (rag's EPYC run of 5
    host calls, 56.6 ms: its total wait's p99 132 ms against 131-141 in a SimPy model
    of the pool, test_predict.py; the mean 11.2 ms against 14.4). Each call its own
    Poisson stream instead has the run waiting behind itself (p99 211 ms)."""
    site = {i: j for j, ops in by_site.items() for i in ops}
    free = {i for i in site if inst.sites[site[i]].cpu and i not in decode and ch[i].option.busy_ms > 0
            and (prefill is None or inst.ops[i].id not in prefill.tables)}
    head: dict[int, int] = {}
    for v in inst.topo:                  # a run's member: all its inputs in one run on its pool
        if v not in free:
            continue
        us = [inst.edges[k].u for k in inst.pred[v]]
        runs = {head.get(u) for u in us}
        head[v] = v
        if len(runs) == 1 and None not in runs and all(
                site[u] == site[v] and ch[u].option.tp == ch[v].option.tp
                and inst.ops[u].weight == inst.ops[v].weight
                and ch[u].option.time_ms <= ch[u].option.busy_ms * (1.0 + 1e-9) for u in us):
            head[v] = runs.pop()
    return dict(sorted(head.items()))


_FIXED_POINT_STEPS = 6   # the batches' load on their pool's queue (simulated)


def _held(pool: queueing.SharedQueue, jobs: list, devices: int, cv2: float, background: float,
          steps: float) -> tuple[float, float, float]:
    """What holds a pool's busy servers, for a prompt's wait (queueing.BatchLaw): the
    jobs' mean residual service (not deflated by the decode's devices, which free at a
    step boundary rather than at once), the servers the decode engines hold, and their
    step (ms, the mean over their busy devices)."""
    alone = queueing.shared_queue(jobs, devices, cv2)
    stepping = max(0.0, pool.load - alone.load)
    return alone.residual_ms, stepping, steps / background if background > 0 else 0.0


def _batch_law(inst: Instance, i: int, ops: list[int], ch, prefill: Prefill,
               pool: queueing.SharedQueue, held: tuple[float, float, float]) -> queueing.BatchLaw | None:
    """The batch prefill op i's prompts run in (queueing.BatchLaw) on its pool's queue:
    its engines (the prefill ops of its model and kind at its tp on its pool, as
    sim/model.py groups them) receive each such op's prompts at its rate, of its
    table's first length; its batch time from its own table. None without a table or
    a wait."""
    op, tp = inst.ops[i], ch[i].option.tp
    table = prefill.tables.get(op.id)
    c, theta = pool.tail()
    if table is None or len(table) < 2 or c <= 0 or not 0 < theta < math.inf:
        return None
    streams = [(inst.rate * inst.ops[x].weight / 1000.0, prefill.tables[inst.ops[x].id][0][0])
               for x in ops if inst.ops[x].id in prefill.tables and inst.ops[x].kind == op.kind
               and ch[x].option.tp == tp and (x == i or (op.model and inst.ops[x].model == op.model))]
    # every input an op of the same request on this pool, just before it: the prompt
    # queued for the pool there (an MoE gate), and its own visit is the batch's extra
    inputs = [inst.edges[k].u for k in inst.pred[i]]
    gated = bool(inputs) and all(ch[u].site == ch[i].site and ch[u].option.busy_ms > 0 and not ch[u].parts
                                 and inst.ops[u].weight == op.weight for u in inputs)
    residual, stepping, step = held
    # of the prompts that wait, those that find every server a job's (the decode engines
    # already gave theirs up) wait for a job to end, not for a step
    full = queueing.erlang_c(pool.servers, pool.load - pool.held) / c if pool.held > 0 else 0.0
    return queueing.BatchLaw(c, pool.servers, residual, table, streams, prefill.budget, own=not gated,
                             stepping=stepping, step_ms=step, full=full)


def _shares(inst: Instance, i: int, x: int, ch) -> bool:
    """Decode op x batches with decode op i on their pool: the same model and kind at
    the same tp (the simulator's engines are per model, pool and tp)."""
    a, b = inst.ops[i], inst.ops[x]
    return bool(a.model) and a.model == b.model and a.kind == b.kind and ch[i].option.tp == ch[x].option.tp


def _flight(inst: Instance, x: int, o) -> float:
    """Mean sequences in flight of decode op x at its placed option, alone."""
    if o.batch <= 1:
        return queueing.in_flight(inst.rate * inst.ops[x].weight, o.time_ms)
    return queueing.filled_mean(inst.rate * inst.ops[x].weight, inst.batch_points(x, o))


def pool_devices(devices: dict[str, int] | None, inst: Instance, choice: list[int]) -> dict[str, int]:
    """The devices each pool runs the plan with: `devices` (the plan's), else those the
    placement holds at the instance's load (Instance.evaluate), at least one."""
    if devices is not None:
        return dict(devices)
    m = inst.evaluate(tuple(choice))
    return {inst.sites[j].name: max(1, int(math.ceil(n))) for j, n in m.devices.items()}
