"""`retrieve.search` at run time: exact top-k over an index scanned in chunks by the
compiled `retrieve` kernel, merged across chunks, against numpy brute force."""

from __future__ import annotations

import numpy as np

from agentc.runtime import index as index_mod


def test_top_k_is_exact_across_chunks(monkeypatch):
    monkeypatch.setattr(index_mod, "CHUNK_ROWS", 5)   # 23 rows: chunks of 5, 5, 5, 5, 3
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(23, 8)).astype(np.float32)
    docs = [f"doc {i}" for i in range(23)]
    idx = index_mod.Index(docs, emb)
    for trial in range(4):
        query = rng.normal(size=8).astype(np.float32)
        if trial == 0:
            query = emb[1] * 2.0            # the best match sits in the first chunk
        cos = emb.astype(np.float64) @ query / (np.linalg.norm(emb, axis=1) * np.linalg.norm(query))
        want = list(np.argsort(-cos, kind="stable")[:4])
        hits = idx.search(query, 4)
        assert [h["id"] for h in hits] == want
        assert [h["text"] for h in hits] == [docs[i] for i in want]
        np.testing.assert_allclose([h["score"] for h in hits], cos[want], atol=2e-6)
    assert idx.search(emb[1], 4)[0] == {"id": 1, "score": 1.0, "text": "doc 1"}


def test_k_larger_than_the_index():
    emb = np.eye(3, 4, dtype=np.float32)
    hits = index_mod.Index(["a", "b", "c"], emb).search(np.array([0, 1, 0, 0], np.float32), 8)
    assert [h["id"] for h in hits][0] == 1 and len(hits) == 3
