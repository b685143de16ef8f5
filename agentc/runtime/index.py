"""A vector index for `retrieve.search`: exact top-k over chunks, merged, with the
documents fetched by id.

The index rows are scanned in chunks of at most `CHUNK_ROWS` by agentc's compiled
`retrieve` kernel (cosine scores and the chunk's top-k, ids local to the chunk). The
last chunk gets a kernel of its own exact size rather than zero padding: a padded row
scores 0, which would beat a real document of negative similarity. Each chunk's
candidates are offset to global ids and merged; the best k by (score descending, id
ascending) are exactly the top k of the whole index, since every member of the global
top k is in its chunk's top k.
"""

from __future__ import annotations

import json
import os

import numpy as np

from agentc.diagnostics import SourceLoc, UsageError
from agentc.runtime.kernels import compiled

CHUNK_ROWS = 4096


def read_documents(path: str) -> list[str]:
    """Documents of `--index NAME=FILE`: a JSON list of strings, or one per line."""
    if not os.path.isfile(path):
        raise UsageError(f"no index file '{path}'")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        try:
            docs = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"index file is not JSON: {err.msg}", SourceLoc(path, err.lineno, err.colno)) from None
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise UsageError("an index file in JSON must hold a list of strings", SourceLoc(path, 1, 1))
        return docs
    return [line for line in text.splitlines() if line.strip()]


class Index:
    """Documents and their embeddings [n, d]; `search(query, k)` -> best-first hits."""

    def __init__(self, docs: list[str], embeddings: np.ndarray):
        self.docs = docs
        self.embeddings = np.ascontiguousarray(embeddings, np.float32)

    def search(self, query: np.ndarray, k: int) -> list[dict]:
        n, d = self.embeddings.shape
        candidates: list[tuple[float, int]] = []
        for start in range(0, n, CHUNK_ROWS):
            rows = min(CHUNK_ROWS, n - start)
            kk = min(k, rows)
            kernel = compiled("retrieve", 1, n=rows, d=d, k=kk)
            scores, ids = kernel(np.asarray(query, np.float32), self.embeddings[start:start + rows])
            candidates += [(float(s), start + int(i)) for s, i in zip(scores, ids)]
        best = sorted(candidates, key=lambda c: (-c[0], c[1]))[:k]
        return [{"id": i, "score": round(s, 6), "text": self.docs[i]} for s, i in best]
