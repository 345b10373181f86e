/* The instruction peak of one core: multiply-accumulates per CPU-second of AVX-512 FMA (fp32,
 * 16 MACs per instruction), vdpbf16ps (bf16, 32) and vpdpbusd (int8, 64), each in 12
 * independent chains so latency hides behind throughput. benchmarks/peak.py compiles and runs
 * it (cc -O3 -funroll-all-loops) with the kinds this CPU has: `peak fp32 bf16 int8`. */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CHAINS 12
#define ROUNDS 10000000L

static double cpu_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static double fp32(void) {
    __m512 sums[CHAINS], x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
    for (int i = 0; i < CHAINS; i++) sums[i] = _mm512_set1_ps((float)i);
    double start = cpu_seconds();
    for (long round = 0; round < ROUNDS; round++)
        for (int i = 0; i < CHAINS; i++) sums[i] = _mm512_fmadd_ps(sums[i], x, y);
    double seconds = cpu_seconds() - start;
    float total = 0;
    for (int i = 0; i < CHAINS; i++) total += _mm512_reduce_add_ps(sums[i]);
    if (total == 1.2345f) puts("");  /* keeps the chains alive */
    return ROUNDS * CHAINS * 16.0 / seconds / 1e9;
}

__attribute__((target("avx512f,avx512bf16"))) static double bf16(void) {
    __m512 sums[CHAINS];
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3f80);
    for (int i = 0; i < CHAINS; i++) sums[i] = _mm512_set1_ps((float)i);
    double start = cpu_seconds();
    for (long round = 0; round < ROUNDS; round++)
        for (int i = 0; i < CHAINS; i++) sums[i] = _mm512_dpbf16_ps(sums[i], x, y);
    double seconds = cpu_seconds() - start;
    float total = 0;
    for (int i = 0; i < CHAINS; i++) total += _mm512_reduce_add_ps(sums[i]);
    if (total == 1.2345f) puts("");
    return ROUNDS * CHAINS * 32.0 / seconds / 1e9;
}

__attribute__((target("avx512f,avx512vnni"))) static double int8(void) {
    __m512i sums[CHAINS], x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(1);
    for (int i = 0; i < CHAINS; i++) sums[i] = _mm512_set1_epi32(i);
    double start = cpu_seconds();
    for (long round = 0; round < ROUNDS; round++)
        for (int i = 0; i < CHAINS; i++) sums[i] = _mm512_dpbusd_epi32(sums[i], x, y);
    double seconds = cpu_seconds() - start;
    long total = 0;
    for (int i = 0; i < CHAINS; i++) total += _mm512_reduce_add_epi32(sums[i]);
    if (total == 12345) puts("");
    return ROUNDS * CHAINS * 64.0 / seconds / 1e9;
}

int main(int count, char **kinds) {
    for (int i = 1; i < count; i++) {
        double rate = !strcmp(kinds[i], "fp32")   ? fp32()
                      : !strcmp(kinds[i], "bf16") ? bf16()
                      : !strcmp(kinds[i], "int8") ? int8()
                                                  : -1;
        printf("%s %.1f\n", kinds[i], rate);
    }
    return 0;
}
