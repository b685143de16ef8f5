/* Calls the sentence-embedding kernel agentc generated for search.agent (mean over
 * tokens, then L2 normalisation) through its C interface, and checks the result.
 *
 * With every input row equal to v, the mean is v and the output is v / |v|, so the
 * result must have unit norm and keep v's direction; both are checked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include AGENTC_KERNEL_HEADER

/* agentc names each kernel after its shape: mean_pool_l2_s<SEQ>_d<DIM>_masked (an
 * embedding's pooling is masked: mask[i] is 1.0 for a token row, 0.0 for padding). */
#define KERNEL_NAME(seq, dim) _mlir_ciface_mean_pool_l2_s##seq##_d##dim##_masked
#define KERNEL(seq, dim) KERNEL_NAME(seq, dim)

int main(void) {
  float *h = malloc(sizeof(float) * SEQ * DIM);
  float *e = malloc(sizeof(float) * DIM);
  float *m = malloc(sizeof(float) * SEQ);
  if (!h || !e || !m) return 2;
  for (int i = 0; i < SEQ; ++i) m[i] = 1.0f;
  for (int i = 0; i < SEQ; ++i)
    for (int j = 0; j < DIM; ++j) h[i * DIM + j] = (float)(j % 7 + 1);

  agentc_memref_f32_2d in = {h, h, 0, {SEQ, DIM}, {DIM, 1}};
  agentc_memref_f32_1d mask = {m, m, 0, {SEQ}, {1}};
  agentc_memref_f32_1d out = {e, e, 0, {DIM}, {1}};
  KERNEL(SEQ, DIM)(&in, &mask, &out);

  double norm2 = 0, v2 = 0;
  for (int j = 0; j < DIM; ++j) {
    norm2 += (double)e[j] * e[j];
    v2 += (double)(j % 7 + 1) * (j % 7 + 1);
  }
  double want0 = 1.0 / sqrt(v2);
  printf("norm=%.6f e[0]=%.6f want=%.6f\n", sqrt(norm2), e[0], want0);
  int ok = fabs(sqrt(norm2) - 1.0) < 1e-4 && fabs(e[0] - want0) < 1e-5;
  free(h);
  free(e);
  free(m);
  puts(ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
