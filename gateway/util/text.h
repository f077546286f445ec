/* text.h - small text helpers: bounded copies and checked number parsing
 *
 * No project knowledge. Numbers are parsed with strtoull plus end-pointer,
 * errno and range checks in one place (STYLE §5: no atoi).
 *
 * Thread safety: all functions are reentrant.
 */
#ifndef SY_UTIL_TEXT_H
#define SY_UTIL_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Copies src into dst (size dstsize). SY_OK, or SY_ETOOBIG when src does
 * not fit (dst then holds "" — never a silent truncation). */
int text_copy(char *dst, size_t dstsize, const char *src);

/* Parses exactly n bytes of s as an unsigned decimal in [min, max]: no
 * sign, no space, no empty string. SY_OK or SY_ESYNTAX/SY_ETOOBIG. */
int text_parse_u64(const char *s, size_t n, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a duration: "30", "30s", "5m", "4h", "5d", "1500ms" into
 * milliseconds in [min_ms, max_ms]. SY_OK or SY_ESYNTAX/SY_ETOOBIG. */
int text_parse_duration_ms(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out);

/* Parses a size: "1024", "10k", "10m", "1g" (binary multiples of 1024)
 * into bytes in [min, max]. */
int text_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* ASCII case-insensitive comparison of n bytes against NUL-terminated
 * lit; 1 when s[0..n) equals lit. */
int text_ieq(const char *s, size_t n, const char *lit);

/* 1 when s[0..n) holds no byte < 0x20 or 0x7f (CR, LF, NUL refused). */
int text_is_clean(const char *s, size_t n);

/* 1 when s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int text_is_utf8(const char *s, size_t n);

#endif
