/* The x86-64 string copy (`rep movsb`) at every destination-after-source distance 0..=64
 * modulo 4 KiB, for 1 KiB, 4 KiB and 64 KiB copies between cache-resident buffers, beside an
 * 8-byte word loop: the measurement behind `atomic_copy::aliased` (which distances the
 * queues' byte copies send to the word loop instead). C, not Rust, because the copies it
 * compares are crate-private:
 *
 *     gcc -O2 benches/string_copy_distance.c -o /tmp/scd && /tmp/scd
 *
 * Prints GB/s per distance (`u`: the source 8 bytes off its 64-byte line). One thread, no
 * other load; BENCHMARKS.md has the figures.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline void rep_movsb(void *d, const void *s, size_t n) {
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

static inline void words(void *d, const void *s, size_t n) {
    volatile uint64_t *dw = d;
    const volatile uint64_t *sw = s;
    for (size_t i = 0; i < n / 8; i++) dw[i] = sw[i];
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
    const size_t sizes[] = {1024, 4096, 65536};
    for (int z = 0; z < 3; z++) {
        size_t n = sizes[z];
        int reps = n > 4096 ? 20000 : 200000;
        printf("%zu bytes, GB/s by distance:", n);
        for (int dist = 0; dist <= 64; dist++) {
            for (int off = 0; off < 2; off++) {
                char *src = a + 512 + off * 8, *dst = b + (512 + off * 8 + dist) % 4096;
                double t0 = now_ns();
                for (int r = 0; r < reps; r++) rep_movsb(dst, src, n);
                printf(" %d%s:%.0f", dist, off ? "u" : "", n / ((now_ns() - t0) / reps));
            }
        }
        double t0 = now_ns();
        for (int r = 0; r < reps; r++) words(b + 528, a + 512, n);
        printf("\n%zu bytes, word loop: %.0f GB/s\n", n, n / ((now_ns() - t0) / reps));
    }
    return 0;
}
