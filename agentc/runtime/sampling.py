"""How the next token is chosen: greedy, or top-k with a temperature and a seed.

The choice itself runs in the compiled `sample` kernel (agentc.codegen.kernels): it
takes the k largest logits, weighs them by softmax(logit / temperature) and returns the
first whose cumulative probability exceeds a uniform number u. A `Sampler` holds what
that kernel needs: `top_k` (a compile-time size, one kernel per k), the temperature,
and a numpy Generator seeded once, which draws one u per token. The same seed gives
the same tokens; greedy (top_k = 1) draws nothing.

Interface (stable; `agentc run` uses it):
    greedy() -> Sampler
    top_k(k, temperature=1.0, seed=0) -> Sampler
    Sampler.params() -> np.ndarray[2] float32: (1/temperature, u) for the next token
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agentc.diagnostics import UsageError


@dataclass
class Sampler:
    """top_k = 1 is greedy; otherwise a seeded draw among the top_k tokens."""

    top_k: int = 1
    temperature: float = 1.0
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if int(self.top_k) != self.top_k or self.top_k < 1:
            raise UsageError(f"sampling: top_k must be a positive integer, got {self.top_k}")
        if not self.temperature > 0:
            raise UsageError(f"sampling: temperature must be > 0, got {self.temperature} "
                             "(use greedy sampling for temperature 0)")
        self.top_k = int(self.top_k)
        self._rng = np.random.default_rng(self.seed)

    @property
    def greedy(self) -> bool:
        return self.top_k == 1

    def params(self) -> np.ndarray:
        """The `sample` kernel's params for the next token: (1/temperature, u)."""
        u = 0.0 if self.greedy else float(self._rng.random())
        return np.array([1.0 / self.temperature, u], dtype=np.float32)


def greedy() -> Sampler:
    """Always the most likely token (the lowest id among equal logits)."""
    return Sampler(1)


def top_k(k: int, temperature: float = 1.0, seed: int = 0) -> Sampler:
    """A seeded draw among the k most likely tokens at `temperature`."""
    return Sampler(k, temperature, seed)
