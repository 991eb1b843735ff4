/*
 * prefetch.h - bringing the rows a kernel reads next into L2 while it computes, written once for
 * the decode row kernels (avx2, avx512), the AMX GQA packing and the AMX MLA step.
 *
 * fia_prefetch_rows: every line of whole rows at once (a small burst: a few rows per call).
 * fia_pf_cursor: the lines of up to two arrays of n rows (array 0's rows, then array 1's), one
 *   sequence in address order within each row, issued a few at a time between the kernel's own
 *   loads. Prefetches issued in address order let the L2 streamer run ahead of them, and a few
 *   at a time never fill the line fill buffers (a burst of them stalls the kernel's loads).
 *   A kernel takes a part of the sequence (fia_pf_range: e.g. each column pass of pv_rows its
 *   share) and issues k lines at a time (fia_pf_lines) or up to a fraction of the whole
 *   (fia_pf_until: the MLA step's prefetch slots between tile multiplies).
 * Prefetches never fault: a row pointer is only dereferenced by the hardware, and the callers
 * pass rows they are about to read. Everything here is static inline (SSE's _mm_prefetch only),
 * so each kernel file compiles it with its own target flags.
 */
#ifndef FIA_KERNELS_PREFETCH_H
#define FIA_KERNELS_PREFETCH_H

#include <immintrin.h>
#include <stdint.h>

#define FIA_PF_AI static inline __attribute__((always_inline))

/* Rows [j0, j1) of rows into L2, every cache line of row_bytes. */
FIA_PF_AI void fia_prefetch_rows(const void *const *rows, int64_t j0, int64_t j1,
                                 int64_t row_bytes) {
    for (int64_t j = j0; j < j1; j++)
        for (int64_t off = 0; off < row_bytes; off += 64)
            _mm_prefetch((const char *)rows[j] + off, _MM_HINT_T1);
}

/* The current array in scalars (rows, bytes), the second one beside it: no field is indexed by
 * a variable, so that a cursor local to a kernel stays in registers. */
typedef struct fia_pf_cursor {
    const void *const *rows; /* the array the next line is in */
    int64_t bytes;           /* its bytes per row */
    const void *const *rows1; /* array 1 (taken after array 0's last row; NULL: none) */
    int64_t bytes1;
    int64_t n;               /* rows per array */
    int64_t total;           /* lines of the whole sequence */
    int64_t row, off;        /* the next line: row of the current array, byte offset in it */
    int64_t left;            /* lines of the range not issued yet */
} fia_pf_cursor;

FIA_PF_AI int64_t fia_pf_row_lines(int64_t bytes) { return bytes > 0 ? (bytes + 63) / 64 : 0; }

/* The whole sequence of n rows of rows0 (bytes0 each), then of rows1 (may be NULL). An absent
 * or empty array is dropped. */
FIA_PF_AI fia_pf_cursor fia_pf_init(const void *const *rows0, int64_t bytes0,
                                    const void *const *rows1, int64_t bytes1, int64_t n) {
    if (!rows1 || bytes1 <= 0) rows1 = NULL, bytes1 = 0;
    if (!rows0 || bytes0 <= 0) rows0 = rows1, bytes0 = bytes1, rows1 = NULL, bytes1 = 0;
    if (!rows0 || n < 0) n = 0;
    const int64_t total = n * (fia_pf_row_lines(bytes0) + fia_pf_row_lines(bytes1));
    fia_pf_cursor c = {rows0, bytes0, rows1, bytes1, n, total, 0, 0, total};
    return c;
}

/* Narrows a fresh cursor (from fia_pf_init) to lines [s0, s0 + count) of its sequence (clipped
 * to it). */
FIA_PF_AI void fia_pf_range(fia_pf_cursor *c, int64_t s0, int64_t count) {
    if (s0 < 0) s0 = 0;
    if (s0 > c->total) s0 = c->total;
    if (count > c->total - s0) count = c->total - s0;
    c->left = count > 0 ? count : 0;
    const int64_t first = c->n * fia_pf_row_lines(c->bytes);
    if (s0 >= first && c->rows1) {
        s0 -= first;
        c->rows = c->rows1;
        c->bytes = c->bytes1;
        c->rows1 = NULL;
    }
    const int64_t l = fia_pf_row_lines(c->bytes);
    c->row = l ? s0 / l : 0;
    c->off = l ? s0 % l * 64 : 0;
}

/* The cursor's next k lines (fewer at the end of its range). */
FIA_PF_AI void fia_pf_lines(fia_pf_cursor *c, int64_t k) {
    if (k > c->left) k = c->left;
    if (k <= 0) return;
    c->left -= k;
    for (; k > 0; k--) {
        _mm_prefetch((const char *)c->rows[c->row] + c->off, _MM_HINT_T1);
        c->off += 64;
        if (c->off >= c->bytes) {
            c->off = 0;
            if (++c->row == c->n) { /* on to array 1 (none: the range has ended) */
                c->row = 0;
                c->rows = c->rows1;
                c->bytes = c->bytes1;
            }
        }
    }
}

/* Issues the lines up to (and excluding) total * num / den of a whole-sequence cursor. */
FIA_PF_AI void fia_pf_until(fia_pf_cursor *c, int64_t num, int64_t den) {
    fia_pf_lines(c, c->total * num / den - (c->total - c->left));
}

#endif /* FIA_KERNELS_PREFETCH_H */
