/* The three ways to copy between private and shared memory that shmkit has weighed, at every
 * destination-after-source distance 0..=64 modulo 4 KiB, for 64 B, 1 KiB, 4 KiB and 64 KiB
 * copies between cache-resident buffers (source 64-byte aligned, as a queue record is):
 *
 *   - `rep movsb`, the CPU's string copy (shmkit used it for queue payloads of 1 KiB and
 *     more until it found the short-distance drop below);
 *   - an 8-byte word loop (`atomic_copy::load`/`store` for short runs);
 *   - a 16-byte SSE2 loop, `movdqa` on the shared side, four per round (`atomic_copy::wide`).
 *
 * C, not Rust, because the copies it compares are crate-private:
 *
 *     gcc -O2 benches/copy_loops.c -o /tmp/copy_loops && /tmp/copy_loops
 *
 * Prints, per size and loop, the GB/s range over distances 0, 1-15, 16-31 and 32-64. One
 * thread, no other load; BENCHMARKS.md has the figures.
 */
#include <emmintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void rep_movsb(void *d, const void *s, size_t n) {
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

static void __attribute__((noinline)) words(void *d, const void *s, size_t n) {
    volatile uint64_t *dw = d;
    const volatile uint64_t *sw = s;
    for (size_t i = 0; i < n / 8; i++) dw[i] = sw[i];
}

/* Aligned loads from the source (the shared side of a load), four 16-byte blocks a round. */
static void __attribute__((noinline)) sse(void *d, const void *s, size_t n) {
    const char *sp = s;
    char *dp = d;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_load_si128((const __m128i *)(sp + i));
        __m128i b = _mm_load_si128((const __m128i *)(sp + i + 16));
        __m128i c = _mm_load_si128((const __m128i *)(sp + i + 32));
        __m128i e = _mm_load_si128((const __m128i *)(sp + i + 48));
        _mm_storeu_si128((__m128i *)(dp + i), a);
        _mm_storeu_si128((__m128i *)(dp + i + 16), b);
        _mm_storeu_si128((__m128i *)(dp + i + 32), c);
        _mm_storeu_si128((__m128i *)(dp + i + 48), e);
        __asm__ volatile("" ::: "memory");
    }
    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *)(dp + i), _mm_load_si128((const __m128i *)(sp + i)));
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
    char *a = aligned_alloc(4096, 1 << 22), *b = aligned_alloc(4096, 1 << 22);
    memset(a, 1, 1 << 22);
    memset(b, 2, 1 << 22);
    const size_t sizes[] = {64, 1024, 4096, 65536};
    void (*loops[])(void *, const void *, size_t) = {rep_movsb, words, sse};
    const char *names[] = {"rep movsb", "word loop", "sse 16 B"};
    const int from[] = {0, 1, 16, 32}, to[] = {0, 15, 31, 64};
    for (int z = 0; z < 4; z++) {
        size_t n = sizes[z];
        int reps = n > 4096 ? 20000 : 200000;
        printf("%zu bytes (GB/s at distance 0 | 1-15 | 16-31 | 32-64):\n", n);
        for (int l = 0; l < 3; l++) {
            printf("  %-10s", names[l]);
            for (int g = 0; g < 4; g++) {
                double lo = 1e9, hi = 0;
                for (int dist = from[g]; dist <= to[g]; dist++) {
                    char *src = a + 512, *dst = b + 512 + dist;
                    double t0 = now_ns();
                    for (int r = 0; r < reps; r++) loops[l](dst, src, n);
                    double gbs = n / ((now_ns() - t0) / reps);
                    lo = gbs < lo ? gbs : lo;
                    hi = gbs > hi ? gbs : hi;
                }
                printf(g ? " | %3.0f-%-3.0f" : " %3.0f-%-3.0f", lo, hi);
            }
            printf("\n");
        }
    }
    return 0;
}
