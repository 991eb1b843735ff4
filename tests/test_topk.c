/*
 * test_topk.c - the public fia_topk (include/fia/sparse.h): against a stable sort by descending
 * score (NaN last, -0 == +0, ties by index) on random rows with ties, signs and NaNs, and its
 * argument checks.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fia.h"
#include "test_util.h"

/* a before b in the contract's order? */
static int before(const float *s, int32_t a, int32_t b) {
    const float x = s[a], y = s[b];
    if (isnan(x) || isnan(y)) return isnan(y) && (!isnan(x) || a < b);
    if (x != y) return x > y;
    return a < b;
}

static const float *g_s;
static int cmp(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x == y ? 0 : before(g_s, x, y) ? -1 : 1;
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261202, "test_topk");
    tu_rng rng = tu_rng_make(seed);
    int bad = 0;
    for (int rep = 0; rep < 200; rep++) {
        const int64_t n = tu_int(&rng, 0, rep < 100 ? 300 : 20000), k = tu_int(&rng, 1, 3000);
        float *s = malloc(sizeof(float) * (size_t)(n ? n : 1));
        int32_t *idx = malloc(sizeof(int32_t) * (size_t)k), *ref = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        void *scratch = malloc(fia_topk_scratch_bytes(n, k));
        for (int64_t i = 0; i < n; i++) {
            const int64_t c = tu_int(&rng, 0, 9);
            s[i] = c == 0 ? NAN : c == 1 ? -0.0f : c < 4 ? (float)tu_int(&rng, -3, 3)
                                                        : (float)tu_uniform(&rng, -1, 1);
            ref[i] = (int32_t)i;
        }
        g_s = s; /* a total order (ties by index): the contract's ranking */
        qsort(ref, (size_t)n, sizeof *ref, cmp);
        const int64_t cnt = fia_topk(s, n, k, idx, scratch);
        int ok = cnt == (n < k ? n : k);
        for (int64_t i = 0; ok && i < cnt; i++) ok = idx[i] == ref[i];
        bad += !ok;
        free(s), free(idx), free(ref), free(scratch);
    }
    tu_check(bad == 0, "fia_topk vs a stable sort: %d of 200 rows differ", bad);
    float one = 1.0f;
    int32_t i1;
    char sc[64 * 1024];
    tu_check(fia_topk(NULL, 1, 1, &i1, sc) == -1 && fia_last_error()[0], "NULL scores refused");
    tu_check(fia_topk(&one, 1, 0, &i1, sc) == -1, "k = 0 refused");
    tu_check(fia_topk(&one, -1, 1, &i1, sc) == -1, "n < 0 refused");
    tu_check(fia_topk(&one, 1, 1, &i1, sc) == 1 && i1 == 0, "one score");
    return tu_summary();
}
