/* Runs f(ctx, i) for i in 0..n on OpenMP threads. Linked against the same
 * libgomp as libtorch, these are torch's own intra-op threads: work split
 * this way does not compete with them for cores, as threads of our own do
 * while torch's idle workers spin after each parallel region. */
#include <stdint.h>

void pipe_parallel_for(int64_t n, void (*f)(void *, int64_t), void *ctx) {
#pragma omp parallel for num_threads((int)n) schedule(static, 1)
    for (int64_t i = 0; i < n; i++) {
        f(ctx, i);
    }
}
