/* clock.c - monotonic and real-time clocks */
#include "gateway/util/clock.h"

#include <stdio.h>
#include <time.h>

int64_t clock_mono_ms(void)
{
    struct timespec ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_real_ms(void)
{
    struct timespec ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_real_us(void)
{
    struct timespec ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *clock_iso8601(int64_t us, char *dst, unsigned long dstsize)
{
    time_t t = (time_t) (us / 1000000);
    struct tm tm;
    char base[32];

    if (gmtime_r(&t, &tm) == NULL || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        base[0] = '\0';
    (void) snprintf(dst, dstsize, "%s.%06ldZ", base, (long) (us % 1000000));
    return dst;
}
