/*
 * tests/test_rand.h - the random inputs of the Check suites that draw from
 * one seed per check: a splitmix64 stream, uniform, integer and normal
 * draws, and a fresh seed from the clock and pid (printed on failure as
 * g_seedstr so that a failing check can be told apart from the others);
 * BSA_TEST_SEED=N in the environment replays seed N in every check.
 * Included by one .c file each; everything is static.
 */
#ifndef BSA_TESTS_TEST_RAND_H
#define BSA_TESTS_TEST_RAND_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t g_seed, g_rng;
static char g_seedstr[48] __attribute__((unused)); /* "(seed N)" */

static inline uint64_t rnd_u64(void) {
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline double urand(void) { return (double)(rnd_u64() >> 11) * (1.0 / 9007199254740992.0); }
/* Uniform in [lo, hi]. */
static inline int64_t irand(int64_t lo, int64_t hi) {
  return lo + (int64_t)(urand() * (double)(hi - lo + 1));
}
static inline double nrand(void) {
  double u = urand(), v = urand();
  if (u < 1e-300) u = 1e-300;
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static inline void fresh_seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  g_seed = ((uint64_t)ts.tv_nsec * 0x2545F4914F6CDD1Dull) ^ ((uint64_t)getpid() << 32) ^
           (uint64_t)ts.tv_sec;
  const char *given = getenv("BSA_TEST_SEED");
  if (given && *given) g_seed = strtoull(given, NULL, 10);
  g_rng = g_seed;
  snprintf(g_seedstr, sizeof g_seedstr, "(seed %llu)", (unsigned long long)g_seed);
}

#endif
