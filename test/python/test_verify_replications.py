"""--verify's verdict over independent replications (sim/verify.py `replicated`):
its t quantiles against the Student t distribution integrated here, and its decisions
on replications whose shares are set by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentc.sim import verify


def _t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with `df` degrees of freedom: its density integrated
    from 0 by Simpson's rule (20,000 panels), plus the half below 0."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    n = 20000
    h = x / n
    f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
    return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))


@pytest.mark.parametrize("df", sorted(verify.T_975))
def test_each_t_quantile_leaves_2_5_percent_above_it(df):
    assert _t_cdf(verify.T_975[df], df) == pytest.approx(0.975, abs=1e-8)


def test_a_term_some_replications_never_reach_is_judged_on_those_that_do():
    """A replication in which no request gave a first token gives TTFT no share: the
    interval is over the others (t at their count), and one alone gives none."""
    runs = _runs([0.995, 0.996, 0.994, 0.995, 0.995])
    runs[1] = []
    (t,) = verify.replicated(runs)
    assert t["replications"] == 4 and (t["holds"], t["decided"]) == (True, True)
    # 0.995, 0.994, 0.995, 0.995: mean 0.99475, sd 0.0005; half-width 3.1824 x 0.0005 / 2 = 0.000796
    assert t["attained_ci"] == pytest.approx([0.99475 - 0.000796, 0.99475 + 0.000796], abs=2e-6)
    (t,) = verify.replicated([runs[0], [], [], [], []])
    assert (t["holds"], t["decided"], t["attained_ci"]) == (False, False, [0.0, 1.0])


def _runs(shares: list[float], n: int = 1000, bound: float = 100.0) -> list[list[tuple]]:
    """One replication per share: `n` requests of which that share take 50 ms and the
    rest 200, judged against `bound` at p99."""
    out = []
    for s in shares:
        k = round(s * n)
        out.append([("latency.p99", "p99", bound, np.array([50.0] * k + [200.0] * (n - k)))])
    return out


def test_a_term_holds_when_the_interval_is_above_the_percentile():
    (t,) = verify.replicated(_runs([0.995, 0.996, 0.994, 0.995, 0.995]))
    # mean 0.995, sd 0.000707 over 5: half-width 2.776 x 0.000707 / sqrt(5) = 0.000878
    assert t["attained_ci"] == pytest.approx([0.995 - 0.000878, 0.995 + 0.000878], abs=2e-6)
    assert (t["holds"], t["decided"], t["replications"]) == (True, True, 5)
    assert t["attained"] == pytest.approx(0.995) and t["observed_ms"] == 50.0


def test_a_term_misses_when_the_interval_is_below_it():
    (t,) = verify.replicated(_runs([0.985, 0.986, 0.984, 0.985, 0.985]))
    assert (t["holds"], t["decided"]) == (False, True)
    assert t["observed_ms"] == 200.0


def test_a_term_astride_the_percentile_is_undecided_and_not_held():
    (t,) = verify.replicated(_runs([0.985, 0.995, 0.99, 0.992, 0.988]))
    lo, hi = t["attained_ci"]
    assert lo < 0.99 < hi
    assert (t["holds"], t["decided"]) == (False, False)


def test_a_mean_term_is_judged_on_the_replications_means():
    runs = [[("latency.mean", "mean", 100.0, np.array([m - 1.0, m + 1.0]))] for m in (97.0, 98.0, 99.0, 98.0, 98.0)]
    (t,) = verify.replicated(runs)
    # mean 98, sd 0.7071: half-width 0.878, so 97.12-98.88 < 100
    assert t["observed_ci_ms"] == pytest.approx([98.0 - 0.8778, 98.0 + 0.8778], abs=1e-3)
    assert (t["holds"], t["decided"], t["observed_ms"]) == (True, True, 98.0)
    runs = [[("latency.mean", "mean", 98.5, r[0][3])] for r in runs]
    (t,) = verify.replicated(runs)
    assert (t["holds"], t["decided"]) == (False, False)


def test_the_interval_covers_the_true_share_95_percent_of_the_time():
    """400 verdicts, each over 5 replications of 1,800 exponential times (mean 1) judged
    at their exact p99, -ln(0.01): the share meeting it is 0.99 exactly, and the
    interval should hold it in 95% of verdicts (here 94.5%; three standard errors of
    400 binomial draws allowed). At the exact p98.5 the term misses: it is decided
    missed (or left undecided), never held (here in none of 400)."""
    rng = np.random.default_rng(7)
    p99, p985 = -math.log(0.01), -math.log(0.015)
    covered = held = 0
    for _ in range(400):
        reps = [rng.exponential(1.0, 1800) for _ in range(5)]
        (t,) = verify.replicated([[("latency.p99", "p99", p99, a)] for a in reps])
        lo, hi = t["attained_ci"]
        covered += lo <= 0.99 <= hi
        (t,) = verify.replicated([[("latency.p99", "p99", p985, a)] for a in reps])
        held += t["holds"]
    se = math.sqrt(0.95 * 0.05 / 400)
    assert abs(covered / 400 - 0.95) <= 3 * se, covered
    assert held <= 4, held


def _at_least(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p), by exact integer binomial coefficients."""
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.parametrize("met,n", [(5, 5), (0, 5), (3, 10), (95, 100), (290, 300), (594, 600), (1, 1)])
def test_the_exact_interval_leaves_2_5_percent_on_each_side(met, n):
    """Clopper-Pearson: at the low end `met` or more is a 2.5% chance, at the high end
    `met` or fewer is; all of 5 trials meeting a bound shows a share of 0.478 at least
    (0.025 ** (1 / 5))."""
    lo, hi = verify.binomial_interval(met, n)
    if met > 0:
        assert _at_least(met, n, lo) == pytest.approx(0.025, rel=1e-6)
    else:
        assert lo == 0.0
    if met < n:
        assert 1 - _at_least(met + 1, n, hi) == pytest.approx(0.025, rel=1e-6)
    else:
        assert hi == 1.0
    if met == n == 5:
        assert lo == pytest.approx(0.025 ** (1 / 5), rel=1e-9)


def test_a_few_requests_that_all_meet_a_p99_do_not_verify_it():
    """5 replications of one request each, all within the bound: their shares do not
    spread (a t interval of [1, 1]), but 5 requests cannot show 99% (exact interval
    0.478-1): undecided, not held. 9,000 that all meet it can (0.99959-1)."""
    (t,) = verify.replicated(_runs([1.0] * 5, n=1))
    assert (t["holds"], t["decided"]) == (False, False)
    (t,) = verify.replicated(_runs([1.0] * 5, n=1800))
    assert (t["holds"], t["decided"]) == (True, True)
