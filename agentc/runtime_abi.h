/* agentc runtime C ABI: functions the runtime provides for ops that are not tensor
 * compute (see docs/runtime_abi.md). Each returns the bytes written to `out`, or a
 * negative error code. */
#ifndef AGENTC_RUNTIME_ABI_H
#define AGENTC_RUNTIME_ABI_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#define AGENTC_ABI_FN(fn) \
  int64_t fn(const char *name, const void *in, size_t n, void *out, size_t cap)

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

#undef AGENTC_ABI_FN
#ifdef __cplusplus
}
#endif
#endif /* AGENTC_RUNTIME_ABI_H */
