/* agentc runtime C ABI: what a runtime provides to the code agentc emits (see
 * docs/runtime_abi.md). A pool's host program ({pool}/{pool}.o, entry point
 * agentc_<pool>_run in {pool}/{pool}.h) calls these. */
#ifndef AGENTC_RUNTIME_ABI_H
#define AGENTC_RUNTIME_ABI_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Ops with no tensor compute. in[i] / in_bytes[i] for each of the op's n_in inputs;
 * out / cap: a buffer the program owns. Return the bytes written to out (0..cap) or
 * a negative code, which stops the host program and is its return value. */
#define AGENTC_ABI_FN(fn)                                                            \
  int64_t fn(const char *name, const void *const *in, const int64_t *in_bytes,       \
             int64_t n_in, void *out, int64_t cap)

AGENTC_ABI_FN(agentc_tokenize);
AGENTC_ABI_FN(agentc_detokenize);
AGENTC_ABI_FN(agentc_tool_lookup);
AGENTC_ABI_FN(agentc_tool_invoke);
AGENTC_ABI_FN(agentc_memory_read);
AGENTC_ABI_FN(agentc_memory_write);
AGENTC_ABI_FN(agentc_observe_append);
AGENTC_ABI_FN(agentc_compute);
AGENTC_ABI_FN(agentc_kv_transfer);
AGENTC_ABI_FN(agentc_allreduce);
/* embed.encode's table lookups: tokenize the text in[0] with model `name`'s tokenizer
 * (truncated to its position embeddings) and write its n first-layer input rows
 * (word + position + type embeddings, LayerNorm'd; [n, d_model] f32) to out. Returns
 * n * d_model * 4. The host program runs the layers on them in a masked kernel of the
 * smallest row bucket that holds n. */
AGENTC_ABI_FN(agentc_embed_rows);

#undef AGENTC_ABI_FN

/* Memory for every buffer of the host program and of a GPU kernel's launcher:
 * zero-filled, at least 64-byte aligned, never NULL (abort instead). `where` says
 * who touches it. agentc_free takes any pointer agentc_alloc returned, whatever
 * its `where` (the runtime remembers how it allocated it). */
#define AGENTC_ALLOC_HOST 0    /* a host program's buffer (values, kernel arguments):
                                  on a GPU pool kernels read it too, so the runtime
                                  returns memory both sides can touch (managed) */
#define AGENTC_ALLOC_DEVICE 1  /* a launcher's temporary only kernels touch
                                  (cuMemAlloc / hipMalloc) */
#define AGENTC_ALLOC_SHARED 2  /* a launcher's temporary the host code also reads
                                  or writes (cuMemAllocManaged / hipMallocManaged) */
void *agentc_alloc(int64_t bytes, int64_t where);
void agentc_free(void *p);

/* The buffer for argument `arg` (1-based: argument 0 is the op's input; for an llm
 * call, 0 is the token embeddings [vocab, d_model] its input rows come from) of the kernel
 * that op `op` (its label) of `model` (a model, or an index for retrieve) calls, on
 * repetition `index` (the layer; for retrieve, the first row of the index chunk);
 * at least `bytes` long. The
 * runtime owns it (weights, KV caches, index rows); never NULL. */
void *agentc_bind(const char *model, const char *op, int64_t arg, int64_t index, int64_t bytes);

/* Cross-pool edges: `channel` pairs a send with its recv; `peer` names the other pool.
 * send returns 0 or a negative code; recv returns the bytes received (<= cap) or a
 * negative code. */
int64_t agentc_send(int64_t channel, const char *peer, const void *data, int64_t bytes);
int64_t agentc_recv(int64_t channel, const char *peer, void *out, int64_t cap);

/* Called before (begin = 1) and after (begin = 0) each op the program runs; `op` is
 * the plan's op id (what `agentc run --trace` names its slices). A runtime that does
 * not trace defines it empty. */
void agentc_trace(const char *op, int64_t begin);

/* A control decision of a program that runs its loops and branches: kind 0, a loop
 * (`region` its label) about to run trip `trip` (0, 1, ...; never past its max):
 * returns 1 to run it, 0 to leave the loop; kind 1, a branch: returns the index of the
 * arm to take (0: then). `prob` is the program's probability (a loop's continue
 * probability, a branch's first-arm probability). agentc run's default: a seeded
 * draw u, 1 / arm 0 when u < prob. Negative: an error (the program stops with it). */
int64_t agentc_decide(const char *region, int64_t kind, double prob, int64_t trip);

#ifdef __cplusplus
}
#endif
#endif /* AGENTC_RUNTIME_ABI_H */
