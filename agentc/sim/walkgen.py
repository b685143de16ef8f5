"""A plan's request walk, specialised: Python source for one generator per plan, built
from its chain regions and compiled in memory (`compile`), which does what
`Simulation._walk` does for the same items with every per-op lookup done before the
run. A request of a voice agent costs some thousands of bytecodes spread over a dozen
ops, and the general walk spends most of its share asking each op what it is (a
region or an op, split, plain or batched, which scale, any cv, a direct transfer);
here those answers are constants of the text, the op's times are literals (floats
print exactly: `repr` round-trips), and loops and branches are Python `for` and `if`.

The text is a transcription of `_walk`: the same calls on the same pools, links and
engines, with the same arguments in the same order, the same float expressions, the
same draws, so it gives the general walk's results bit for bit (test_sim_walkgen.py
runs both). What it does not specialise it hands to the general walk (`yield from`):
a split op, a region that is not a chain (`parallel`), and every traced request
(model.py picks the walk per request). Nothing is written to disk; the same plan
gives the same text.
"""

from __future__ import annotations

import math
from heapq import heappop, heappush, heapreplace

from agentc.sim.resources import Transfer, at

INF = math.inf


class _Text:
    """Lines of generated source, with the current indentation."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 1

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def block(self, head: str):
        self(head)
        return _Indent(self)


class _Indent:
    def __init__(self, text: _Text):
        self.text = text

    def __enter__(self):
        self.text.depth += 1
        self.at = len(self.text.lines)

    def __exit__(self, *exc):
        if len(self.text.lines) == self.at:   # an empty body (a loop or arm without ops)
            self.text("pass")
        self.text.depth -= 1


# When the next event is due: read from SimPy's heap at the start and again after
# whatever may push onto it (a yield, a pool's ask, a decoder's join); the walk's
# other calls (a pool's hold, a link, a lone prefill) schedule nothing, and only
# SimPy's step pops, so in between the heap's first time cannot change.
NXT = "nxt = due[0][0] if due else INF"


def _f(x: float) -> str:
    """A float as a literal that reads back as the same float."""
    r = repr(float(x))
    return f"float('{r}')" if r in ("inf", "-inf", "nan") else r


class _Walk:
    """Builds the walk of one plan; `names` are the objects its text refers to."""

    def __init__(self, sim, plan):
        self.sim, self.plan = sim, plan
        self.runs = sim.runs[id(plan)]
        self.chains = sim.chains[id(plan)]
        # the measured window (every pool's and link's), the helpers, the simulation
        self.names: dict[str, object] = {"T0": sim.window[0], "T1": sim.window[1], "INF": INF, "at": at,
                                         "heappop": heappop, "heappush": heappush, "heapreplace": heapreplace,
                                         "Transfer": Transfer, "sim": sim, "env": sim.env, "FLOW": sim.flow}
        self.ids: dict[int, str] = {}
        self.t = _Text()

    def name(self, obj, prefix: str) -> str:
        """A global name for `obj` in the generated module (one per object)."""
        key = id(obj)
        if key not in self.ids:
            self.ids[key] = f"{prefix}{len(self.ids)}"
            self.names[self.ids[key]] = obj
        return self.ids[key]

    def source(self) -> str:
        t = self.t
        t.lines.append("def walk(req, now):")
        t("due = sim.due")
        t("arrive = req.arrive")
        t("s_in = req.s_in")
        t("s_out = req.s_out")
        t("measured = req.measured")
        t(NXT)
        self.region("")
        t("return now")
        # a generator even when the plan has nothing that waits
        t("yield")
        return "\n".join(t.lines) + "\n"

    # ------------------------------------------------------------------ regions
    def region(self, rid: str) -> None:
        """The items of region `rid` in order, from the walk's `now`."""
        chain = self.chains.get(rid)
        if chain is None:   # not a chain: its items as processes (Simulation._block)
            self.t(f"now = yield from sim._block(req, {self.name(self.plan.regions[rid], 'G')}, now)")
            self.t(NXT)
            return
        for item in chain:
            if isinstance(item, str):   # a child region's id
                self.control(item)
            else:
                self.op(item)

    def control(self, rid: str) -> None:
        t, plan = self.t, self.plan
        region = plan.regions[rid]
        if region.kind == "loop":
            counts = self.name(self.sim.loop_trips[rid], "T")
            p, n = region.continue_prob, region.max_trips
            if p >= 1.0:
                t("trips = %d" % n)
            else:   # Simulation._trips
                t("trips = 0")
                with t.block(f"while trips < {n} and next(FLOW) < {_f(p)}:"):
                    t("trips += 1")
            t(f"{counts}[trips] += 1")
            with t.block("for _ in range(trips):"):
                if self.chains.get(rid) is not None:
                    self.region(rid)
                else:
                    t(f"now = yield from sim._block(req, {self.name(region, 'G')}, now)")
                    t(NXT)
            return
        if region.kind == "branch":
            arms = sorted(region.items, key=lambda a: plan.regions[a].index)
            counts = self.name(self.sim.arm_counts[rid], "A")
            with t.block(f"if next(FLOW) < {_f(plan.regions[arms[0]].prob)}:"):
                t(f"{counts}[0] += 1")
                self.region(arms[0])
            with t.block("else:"):
                t(f"{counts}[1] += 1")
                self.region(arms[1])
            return
        self.region(rid)

    # ------------------------------------------------------------------ ops
    def op(self, r) -> None:
        t = self.t
        t(f"# {r.op.id!r}")
        if r.parts:   # a split op draws its part: the general walk
            t(f"now = yield from sim._walk(req, ({self.name(r, 'R')},), now)")
            t(NXT)
            return
        self.inputs(r)
        t(f"{self.name(r, 'R')}.count += 1")
        scale = ("1.0", "s_in", "s_out")[r.scale]
        if r.plain:
            self.plain(r, scale)
        elif r.decoder is not None:
            self.decode(r)
        elif r.prefiller is not None:
            self.prefill(r, scale)
        elif r.batched:
            self.planned(r, scale)
        if r.outs:
            self.outs(r)

    def inputs(self, r) -> None:
        """The transfers it reads: carry on at a landing ahead of the clock when nothing
        comes before it (and the op may start ahead), else wait for it on the clock."""
        t = self.t
        for key in r.inputs:
            with t.block("if arrive:"):
                t(f"x = arrive.pop({key!r}, None)")
                with t.block("if x is not None and x.fire > now:"):
                    if r.ahead:
                        with t.block("if nxt > x.fire:"):
                            t("now = x.fire")
                        with t.block("else:"):
                            self._await_landing()
                    else:
                        self._await_landing()

    def _await_landing(self) -> None:
        t = self.t
        with t.block("while x.fire > now:"):
            self._wait_at(t, "x.fire")
            t(NXT)
            t("now = env._now")

    def plain(self, r, scale: str) -> None:
        """An op: its devices held for its busy time, then its wait."""
        t = self.t
        pool, waits = self.name(r.pool, "P"), self.name(r.waits, "W")
        # (a time times the scale 1.0 is that time: left out)
        if r.cv > 0:
            t(f"f = sim.factor({r.kind!r}) * {scale}")
            f = " * f"
        elif scale != "1.0":
            t(f"f = {scale}")
            f = " * f"
        else:
            f = ""
        busy = f"{_f(r.busy)}{f}"
        if f:
            t(f"busy = {busy}")
            busy = "busy"
        if r.tp == 1 and r.pool.free_ids is None and r.pool.keep is False:
            # Pool.hold_now's common cases, inline: no one waits, none retire, and a free
            # device or an ended one-device hold to take (else hold_now, which reaps)
            # (each case once: the walk's text, and the bytecode a request runs through, stay small)
            t(f"ones = {pool}.ones")
            with t.block(f"if {pool}.waiters or {pool}.retire or not ({pool}.free or (ones and ones[0] <= now)):"):
                self._hold(r, pool, waits, busy)
            with t.block("else:"):
                t(f"until = now + {busy}")
                with t.block(f"if {pool}.free:"):
                    t(f"{pool}.free -= 1")
                    t("heappush(ones, until)")
                with t.block("else:"):
                    t("heapreplace(ones, until)")
                self._held(pool, waits, busy)
        else:
            self._hold(r, pool, waits, busy)
        t(f"end = now + {_f(r.total)}{f}")
        with t.block("if end > now:"):
            self._until("end")

    @staticmethod
    def _wait_at(t, when: str) -> None:
        """Wait on the clock till `when` (resources.at: an At on SimPy's heap; a call, not
        inline: there are many such waits, each seldom taken, and the text stays small)."""
        t(f"yield at(env, {when})")

    def _until(self, when: str) -> None:
        """Advance `now` to `when`: straight there when no event is due before it (nothing
        else can happen meanwhile), else through SimPy, which runs what is due first."""
        t = self.t
        with t.block(f"if nxt > {when}:"):
            t(f"now = {when}")
        with t.block("else:"):
            self._wait_at(t, when)
            t(NXT)
            t("now = env._now")

    def _catch_up(self) -> None:
        """Bring SimPy's clock to the walk's `now` (the walk runs ahead of it between
        events) before asking anything that schedules on it."""
        with self.t.block("if now > env._now:"):
            self._wait_at(self.t, "now")
            self.t(NXT)

    def _ask(self, pool: str, tp: int, busy: str) -> None:
        """Ask `pool` for `tp` devices for `busy` ms and wait for the grant if queued."""
        t = self.t
        t(f"ev, ids = {pool}.ask({tp}, {busy})")
        t(NXT)
        with t.block("if ev is not None:"):
            t("yield ev")
            t(NXT)

    def _held(self, pool: str, waits: str, busy: str) -> None:
        """A one-device hold granted at once: its busy time, its wait (none)."""
        t = self.t
        with t.block("if T0 <= now and until <= T1:"):
            t(f"{pool}.busy_area += {busy}")   # (1 * busy)
        with t.block("else:"):
            t(f"{pool}._busy(now, until, 1)")
        with t.block("if measured:"):
            t(f"{waits}.append(0.0)")   # (now - start)

    def _hold(self, r, pool: str, waits: str, busy: str) -> None:
        """Its devices from the pool, queueing on the clock when they are not free."""
        t = self.t
        t("start = now")
        with t.block(f"if {pool}.hold_now({r.tp}, {busy}, now) is False:"):
            self._catch_up()
            self._ask(pool, r.tp, busy)
            t("now = env._now")
        with t.block("if measured:"):
            t(f"{waits}.append(now - start)")

    def decode(self, r) -> None:
        """It joins a decode engine (on the clock to wake an idle one) and waits for its
        sequence to leave (Simulation._decoded, _tokens)."""
        t = self.t
        dec, op = self.name(r.decoder, "D"), self.name(r.op, "O")
        t(f"seq = {dec}.join(req, {op}, now)")
        with t.block("if seq is None:"):   # (`nxt` is read again after the yields)
            self._wait_at(t, "now")
            t(f"seq = {dec}.join(req, {op}, now)")
        t("yield seq")
        t(NXT)
        t("now = env._now")
        self._tokens(r.op, "seq.first", "seq.last", "seq.tokens")

    def planned(self, r, scale: str) -> None:
        """A decode op under `--batching planned` (Simulation._planned): an op on the
        clock whose tokens come evenly over its planned time."""
        t = self.t
        pool, waits, op = self.name(r.pool, "P"), self.name(r.waits, "W"), r.op
        self._catch_up()
        t(f"f = sim.factor({op.kind!r}) * {scale}" if r.cv > 0 else f"f = {scale}")   # (1.0 * scale)
        t("t_ask = env._now")
        self._ask(pool, r.tp, f"{_f(r.busy)} * f")
        t("start = env._now")
        with t.block("if measured:"):
            t(f"{waits}.append(start - t_ask)")
        t(f"end = start + {_f(r.total)} * f")
        with t.block("if nxt <= end:"):   # Simulation._wait
            self._wait_at(t, "end")
            t(NXT)
        t("now = end")
        t(f"tokens = max(1, round({op.decode.tokens!r} * s_out))")
        t("first = start + (now - start) / tokens")
        self._tokens(op, "first", "now", "tokens")

    def _tokens(self, op, first: str, last: str, tokens: str) -> None:
        """A decode op's tokens: the request's first token and its gaps (Simulation._tokens)."""
        t = self.t
        if op.id in self.plan.ttft_ops:
            with t.block(f"if req.first_token is None or {first} < req.first_token:"):
                t(f"req.first_token = {first}")
        with t.block(f"if {op.id!r} in sim.tbt_ops and {tokens} > 1:"):
            t(f"gap = ({last} - {first}) / ({tokens} - 1)")
            t("tbt = req.tbt")   # (max(tbt, gap): gap only when above)
            t("req.tbt = gap if tbt is None or gap > tbt else tbt")

    def prefill(self, r, scale: str) -> None:
        """A prefill batch: alone at once, else queued on the clock."""
        t = self.t
        pre, op = self.name(r.prefiller, "F"), self.name(r.op, "O")
        t(f"scale = {scale}")
        t(f"tokens = {r.op.tokens!r} * scale")
        F = r.prefiller
        if F.factors is None:
            # Prefiller.alone, inline (no factor to draw): a lone batch when no prompt
            # queues, an engine is idle and the pool grants its devices at once
            pool, counts = self.name(F.devices, "P"), self.name(self.sim.prefill_batches[r.op.id], "C")
            waits = self.name(F.devices.stats.waits, "W")
            t("lone = False")
            with t.block(f"if not {pre}.queue:"):
                t(f"fb = {pre}.busy")
                t(f"fi = {pre}.idle")
                with t.block("while fb and fb[0][0] <= now:"):
                    t("heappush(fi, heappop(fb)[1])")
                with t.block("if fi:"):
                    plan_tokens = r.op.tokens * 1.0   # the time of the plan's prompt, looked up now
                    t(f"ms = {_f(r.op.prefill.at(plan_tokens))} if tokens == {_f(plan_tokens)} "
                      f"else {op}.prefill.at(tokens)")
                    if F.tp == 1 and F.devices.free_ids is None and F.devices.keep is False:
                        # Pool.hold_now's common cases, inline (as `plain`): no one waits,
                        # none retire, a free device or an ended one-device hold to take
                        t("ones = %s.ones" % pool)
                        with t.block(f"if {pool}.waiters or {pool}.retire or not "
                                     f"({pool}.free or (ones and ones[0] <= now)):"):
                            t(f"held = {pool}.hold_now(1, ms, now) is not False")
                        with t.block("else:"):
                            t("until = now + ms")
                            with t.block(f"if {pool}.free:"):
                                t(f"{pool}.free -= 1")
                                t("heappush(ones, until)")
                            with t.block("else:"):
                                t("heapreplace(ones, until)")
                            with t.block("if T0 <= now and until <= T1:"):
                                t(f"{pool}.busy_area += ms")   # (1 * ms)
                            with t.block("else:"):
                                t(f"{pool}._busy(now, until, 1)")
                            t("held = True")
                    else:
                        t(f"held = {pool}.hold_now({F.tp}, ms, now) is not False")
                    with t.block("if held:"):
                        t("busy_end = now + ms")
                        t("heappush(fb, (busy_end, heappop(fi)))")
                        t(f"{counts}[1] = {counts}.get(1, 0) + 1")
                        with t.block("if measured:"):
                            t(f"{waits}.append(0.0)")
                        t("lone = True")
            with t.block("if lone:"):
                self._until("busy_end")
                t("f = 1.0")
        else:
            t(f"lone = {pre}.alone({op}, tokens, req, now)")
            with t.block("if lone is not None:"):
                t("busy_end = lone[1]")
                self._until("busy_end")
                t("f = lone[3]")
        with t.block("else:"):
            with t.block("if now > env._now:"):
                self._wait_at(t, "now")
                t(NXT)
            t(f"f = (yield {pre}.submit({op}, tokens, req))[3]")
            t(NXT)
            t("now = env._now")
        rest = r.total - r.busy
        if not rest > 0:   # (times a factor and a scale, both >= 0: never above 0)
            return
        t(f"rest = {_f(rest)} * f * scale")
        with t.block("if rest > 0:"):
            t("end = now + rest")
            with t.block("if nxt <= end:"):   # Simulation._wait
                self._wait_at(t, "end")
                t(NXT)
            t("now = end")

    def outs(self, r) -> None:
        """Its transfers: one read next in the chain folds in when alone on its link and
        landing before the next event due (as _walk's `direct`), else sent."""
        t = self.t
        if r.direct is None:
            self._send(r)
            return
        link, wire, latency, grows = r.direct
        wire_expr = f"{_f(wire)} * s_in" if grows else _f(wire)
        if link is None:
            t(f"land = now + {_f(latency)}")
            t("land = now + (land - now)")
            with t.block("if nxt > land:"):
                t("now = land")
            with t.block("else:"):
                self._send(r)
            return
        name = self.name(link, "L")
        t(f"p1 = {name}.p1")
        t("fold = False")
        with t.block("if p1 is None or p1 <= now:"):
            t(f"wire = {wire_expr}")
            t(f"land = now + wire + {_f(latency)}")
            t("land = now + (land - now)")
            with t.block("if nxt > land:"):
                # Link.alone, inline
                with t.block(f"if {name}.active:"):
                    t(f"{name}.active.clear()")
                t(f"p0 = {name}.p0")
                with t.block("if p0 is not None:"):
                    with t.block(f"if p0 >= T0 and p1 <= T1:"):
                        t(f"{name}.busy_ms += p1 - p0")
                    with t.block("else:"):
                        t(f"b = (p1 if p1 < T1 else T1) - "
                          f"(p0 if p0 > T0 else T0)")
                        with t.block("if b > 0:"):
                            t(f"{name}.busy_ms += b")
                t(f"{name}.p0 = now")
                t(f"{name}.p1 = now + wire")
                t("now = land")
                t("fold = True")
        with t.block("if not fold:"):
            self._send(r)

    def _send(self, r) -> None:
        t = self.t
        sent: dict[int, int] = {}   # id(link) -> its transfers sent by this op so far
        links = [id(o[1]) for o in r.outs if o[1] is not None]
        for key, link, wire, latency, grows, _e in r.outs:
            wire_expr = f"{_f(wire)} * s_in" if grows else _f(wire)
            if link is None:
                t(f"arrive[{key!r}] = Transfer(now, now + {_f(latency)})")
                continue
            # Link.send, its first case inline: the link idle (or its busy period over)
            name, lat = self.name(link, "L"), _f(latency)
            k = sent[id(link)] = sent.get(id(link), 0) + 1
            if links.count(id(link)) < 2:
                k = 0   # (its only one: no second to inline)
            solo = f"solo_{name}"
            t(f"wire = {wire_expr}")
            t(f"act = {name}.active")
            if k == 2:   # the op's second transfer on this link
                with t.block(f"if {solo} and {name}.p1 > now:"):
                    self._second(name, lat)
                with t.block(f"elif act and {name}.p1 > now:"):
                    t(f"x = {name}.send(wire, {lat}, now)")
            else:
                with t.block(f"if act and {name}.p1 > now:"):
                    t(f"x = {name}.send(wire, {lat}, now)")
                    if k == 1:
                        t(f"{solo} = False")
            with t.block("else:"):
                if k == 1:
                    t(f"{solo} = True")
                with t.block("if act:"):
                    t("act.clear()")
                t(f"{name}.last = now")
                t(f"x = Transfer(now, now + wire + {lat})")
                t(f"act.append([wire, x, {lat}])")
                t(f"p0 = {name}.p0")
                with t.block("if p0 is not None:"):
                    t(f"p1 = {name}.p1")
                    t(f"b = (p1 if p1 < T1 else T1) - "
                      f"(p0 if p0 > T0 else T0)")
                    with t.block("if b > 0:"):
                        t(f"{name}.busy_ms += b")
                t(f"{name}.p0 = now")
                t(f"{name}.p1 = now + wire")
            t(f"arrive[{key!r}] = x")


    def _second(self, name: str, lat: str) -> None:
        """Link.send's shared case for two transfers, inline: the op's first transfer on
        the link went alone at this `now` (the link was idle), so the link holds just it
        (`act[0]`, its clock at `now`) and a second one shares it from the start. The
        same float operations as Link.send's loop over the two in order of wire time
        (a stable sort: the first on a tie)."""
        t = self.t
        t(f"new = [wire, None, {lat}]")
        t("act.append(new)")
        t("first = act[0]")
        t("w1 = first[0]")
        t("x1 = first[1]")
        with t.block("if w1 <= wire:"):
            t("tt = now + 2 * (w1 - 0.0)")
            t("a1 = tt + first[2]")
            t("tt = tt + 1 * (wire - w1)")
            t(f"x = new[1] = Transfer(now, tt + {lat})")
        with t.block("else:"):
            t("tt = now + 2 * (wire - 0.0)")
            t(f"x = new[1] = Transfer(now, tt + {lat})")
            t("tt = tt + 1 * (w1 - wire)")
            t("a1 = tt + first[2]")
        with t.block("if a1 != x1.at:"):
            t("x1.at = a1")
            t("x1.fire = now + (a1 - now)")
        t(f"{name}.p1 = tt")


_CODE: dict[str, object] = {}   # text -> its compiled code (a plan simulated again skips compile)


def build(sim, plan):
    """The specialised walk of `plan` (a generator function of (req, now)) and its text."""
    w = _Walk(sim, plan)
    text = w.source()
    code = _CODE.get(text)
    if code is None:
        if len(_CODE) >= 32:
            del _CODE[next(iter(_CODE))]
        code = _CODE[text] = compile(text, f"<agentc walk of {plan.agent}>", "exec")
    names = dict(w.names)
    exec(code, names)
    return names["walk"], text
