/*
 * li_topk.c - exact top-k of one row of lightning-indexer scores: a radix select in O(n), then a
 * stable radix sort of the k survivors.
 *
 * Ordering. A score maps to a 32-bit key that is monotone in the score: NaN -> 0 (below every
 * number, -inf included), -0 -> the key of +0, negative x -> ~bits, non-negative x -> bits with
 * the sign bit set. Larger key = better. Survivors are gathered in index order and sorted
 * stably by descending key, so equal scores keep the lower index first.
 *
 * Select (n > k). Pass 1 counts the top 11 key bits over the row (2048 bins; four interleaved
 * copies, since the scores of a row crowd into a few bins) and finds the bin
 * that holds the k-th largest key. Pass 2 splits the row, in index order, into the keys above
 * that bin (all taken) and the keys in it (E). Two more digit levels (11 and 10 bits) over E
 * alone find the exact k-th key T and how many keys equal to T are taken (the lowest indices).
 * The taken part of E is merged with the keys above by index, then sorted. Two passes over the
 * row whatever k is; E is usually small (n / 2048 for spread scores).
 *
 * Sort. LSD radix sort on the 32 key bits (4 digits of 8 bits, descending via ~key, stable),
 * skipping digits that every survivor shares; insertion sort below 32 elements.
 */
#include <string.h>

#include "core/convert.h"
#include "core/status.h"
#include "ops/li_internal.h"

enum { LI_HIST1 = 2048, LI_SMALL_SORT = 32 };

/* Branch-free (selects become cmov): scores of mixed signs would mispredict. */
static inline uint32_t li_key(float f) {
    uint32_t u = fia_f32_bits(f);
    u = u == 0x80000000u ? 0u : u;                                  /* -0 == +0 */
    const uint32_t key = u ^ ((uint32_t)((int32_t)u >> 31) | 0x80000000u);
    return (u & 0x7fffffffu) > 0x7f800000u ? 0u : key;              /* NaN: last */
}

/* Packed survivor: key in the high half, index in the low half. */
static inline uint64_t li_pack(uint32_t key, int64_t i) { return (uint64_t)key << 32 | (uint32_t)i; }

size_t fia_li_topk_scratch_bytes(int64_t n_max, int64_t k) {
    return (size_t)LI_HIST1 * 4 * sizeof(uint32_t) + (size_t)(3 * k + 2 * n_max) * sizeof(uint64_t);
}

/* Sorts v[0..m) by descending key, stably (ties keep their order). tmp: m elements. Returns the
 * buffer holding the result (v or tmp). */
static uint64_t *li_sort_desc(uint64_t *v, uint64_t *tmp, int64_t m) {
    if (m <= LI_SMALL_SORT) {
        for (int64_t i = 1; i < m; i++) {
            const uint64_t x = v[i];
            const uint32_t kx = (uint32_t)(x >> 32);
            int64_t j = i;
            while (j > 0 && (uint32_t)(v[j - 1] >> 32) < kx) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
        return v;
    }
    uint32_t cnt[4][256];
    memset(cnt, 0, sizeof cnt);
    for (int64_t i = 0; i < m; i++) {
        const uint32_t d = ~(uint32_t)(v[i] >> 32);
        cnt[0][d & 255u]++;
        cnt[1][(d >> 8) & 255u]++;
        cnt[2][(d >> 16) & 255u]++;
        cnt[3][d >> 24]++;
    }
    for (int pass = 0; pass < 4; pass++) {
        uint32_t *c = cnt[pass];
        const int shift = 8 * pass;
        if (c[(~(uint32_t)(v[0] >> 32) >> shift) & 255u] == (uint32_t)m) continue; /* uniform */
        uint32_t sum = 0;
        for (int b = 0; b < 256; b++) {
            const uint32_t x = c[b];
            c[b] = sum;
            sum += x;
        }
        for (int64_t i = 0; i < m; i++) {
            const uint32_t d = (~(uint32_t)(v[i] >> 32) >> shift) & 255u;
            tmp[c[d]++] = v[i];
        }
        uint64_t *t = v;
        v = tmp;
        tmp = t;
    }
    return v;
}

/* In e[0..m) (keys sharing all digits above `shift + bits`), finds the digit of width `bits` at
 * `shift` that holds the need-th largest key; *need becomes the rank within that digit. Copies
 * the elements with that digit, in order, to out (may equal e) and returns their count. */
static int64_t li_refine(const uint64_t *e, int64_t m, int shift, int bits, int64_t *need,
                         uint32_t *hist, uint32_t *digit, uint64_t *out) {
    const uint32_t mask = (1u << bits) - 1u;
    memset(hist, 0, (size_t)(mask + 1u) * sizeof *hist);
    for (int64_t i = 0; i < m; i++) hist[((uint32_t)(e[i] >> 32) >> shift) & mask]++;
    int64_t cum = 0;
    uint32_t b = mask;
    while (cum + hist[b] < *need) cum += hist[b--];
    *need -= cum;
    *digit = b;
    int64_t w = 0;
    for (int64_t i = 0; i < m; i++)
        if ((((uint32_t)(e[i] >> 32) >> shift) & mask) == b) out[w++] = e[i];
    return w;
}

int64_t fia_li_topk(const float *s, int64_t n, int64_t k, int32_t *idx, void *scratch) {
    uint32_t *hist = scratch;
    uint64_t *above = (uint64_t *)(hist + 4 * LI_HIST1); /* k */
    uint64_t *merged = above + k;                    /* k */
    uint64_t *tmp = merged + k;                      /* k */
    uint64_t *e = tmp + k;                           /* n: bin b1, index order */
    uint64_t *e2 = e + n;                            /* n: refinement */
    if (n <= 0 || k <= 0) return 0;
    if (n <= k) {
        for (int64_t i = 0; i < n; i++) merged[i] = li_pack(li_key(s[i]), i);
        const uint64_t *r = li_sort_desc(merged, tmp, n);
        for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)(uint32_t)r[i];
        return n;
    }
    /* pass 1: the top 11 bits, in four interleaved histograms (scores crowd into a few bins,
     * and consecutive increments of one counter would wait on each other through memory) */
    memset(hist, 0, 4 * LI_HIST1 * sizeof *hist);
    int64_t i4 = 0;
    for (; i4 + 4 <= n; i4 += 4) {
        hist[li_key(s[i4]) >> 21]++;
        hist[LI_HIST1 + (li_key(s[i4 + 1]) >> 21)]++;
        hist[2 * LI_HIST1 + (li_key(s[i4 + 2]) >> 21)]++;
        hist[3 * LI_HIST1 + (li_key(s[i4 + 3]) >> 21)]++;
    }
    for (; i4 < n; i4++) hist[li_key(s[i4]) >> 21]++;
    for (int b = 0; b < LI_HIST1; b++)
        hist[b] += hist[LI_HIST1 + b] + hist[2 * LI_HIST1 + b] + hist[3 * LI_HIST1 + b];
    int64_t cum = 0;
    uint32_t b1 = LI_HIST1 - 1;
    while (cum + hist[b1] < k) cum += hist[b1--];
    int64_t need = k - cum; /* 1..hist[b1] keys to take from bin b1 */
    /* pass 2: split the row into the keys above bin b1 (all taken) and bin b1 itself */
    int64_t na = 0, ne = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint32_t key = li_key(s[i]);
        const uint32_t d = key >> 21;
        if (d > b1) above[na++] = li_pack(key, i);
        else if (d == b1) e[ne++] = li_pack(key, i);
    }
    /* the exact k-th key thr, and how many keys equal to it are taken */
    uint32_t b2, b3;
    int64_t m = li_refine(e, ne, 10, 11, &need, hist, &b2, e2);
    m = li_refine(e2, m, 0, 10, &need, hist, &b3, e2);
    (void)m;
    const uint32_t thr = b1 << 21 | b2 << 10 | b3;
    /* merge, by index, the keys above bin b1 with the taken keys of bin b1 */
    int64_t nm = 0, ia = 0, taken = 0;
    for (int64_t i = 0; i < ne; i++) {
        const uint32_t key = (uint32_t)(e[i] >> 32);
        if (key > thr || (key == thr && taken++ < need)) {
            while (ia < na && (uint32_t)above[ia] < (uint32_t)e[i]) merged[nm++] = above[ia++];
            merged[nm++] = e[i];
        }
    }
    while (ia < na) merged[nm++] = above[ia++];
    const uint64_t *r = li_sort_desc(merged, tmp, nm);
    for (int64_t i = 0; i < nm; i++) idx[i] = (int32_t)(uint32_t)r[i];
    return nm;
}

/* The public form (include/fia/sparse.h). */
size_t fia_topk_scratch_bytes(int64_t n, int64_t k) {
    return fia_li_topk_scratch_bytes(n < 0 ? 0 : n, k < 0 ? 0 : k);
}

int64_t fia_topk(const float *scores, int64_t n, int64_t k, int32_t *indices, void *scratch) {
    fia_error_clear();
    if (!scores || !indices || !scratch || n < 0 || k < 1 || n > INT32_MAX || k > INT32_MAX) {
        (void)FIA_INVALID("fia_topk: scores, indices and scratch must be given, n (%lld) in "
                    "0..2^31-1 and k (%lld) in 1..2^31-1", (long long)n, (long long)k);
        return -1;
    }
    return fia_li_topk(scores, n, k, indices, scratch);
}
