/* clock.h - the two clocks: monotonic for deadlines, real time for records
 *
 * Deadlines and backoff waits use CLOCK_MONOTONIC so a clock step never
 * fires or stretches them; stored times (arrival, next attempt) are real
 * time, because they must survive a restart.
 *
 * Thread safety: reentrant.
 */
#ifndef SY_UTIL_CLOCK_H
#define SY_UTIL_CLOCK_H

#include <stdint.h>

int64_t clock_mono_ms(void);
int64_t clock_real_ms(void);
int64_t clock_real_us(void);
/* Formats unix microseconds as "2026-11-22T03:22:29.123456Z" into dst. */
const char *clock_iso8601(int64_t us, char *dst, unsigned long dstsize);

#endif
