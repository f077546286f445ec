/* cli_hold.h - `switchyard hold add|list|rm`: the shared hold rules
 *
 * Thread safety: main thread only.
 */
#ifndef SY_CLI_HOLD_H
#define SY_CLI_HOLD_H

#include <stdint.h>
#include <stdio.h>

#include "gateway/config.h"

/* Runs `hold <argv[0]> ...` against cfg (borrowed); output to out, errors
 * to stderr. Returns the exit code (0 ok, 1 failure, 2 usage). */
int cli_hold(const struct config *cfg, int argc, char **argv, FILE *out);

/* Parses an --until value: unix seconds ("1767225600"), "+DURATION"
 * ("+90m", "+2h", "+1d": from now_s), or ISO 8601 UTC or with an offset
 * ("2026-12-24T18:00:00Z", "2026-12-24T18:00Z", "2026-12-24T19:00:00+01:00").
 * SY_OK with *until (unix seconds), or SY_ESYNTAX. */
int cli_hold_parse_until(const char *s, int64_t now_s, int64_t *until);

#endif
