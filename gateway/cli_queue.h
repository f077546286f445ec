/* cli_queue.h - `switchyard queue list|show|rebuild|hold|release|kick|drop|fail|reroute`
 *
 * Recipients are selected by queue id (QID or QID:IDX) and/or by filter
 * (--sender, --recipient, --listener, --held, --transport/--via, --older-than,
 * --newer-than); docs/cli.md describes every command.
 *
 * Thread safety: main thread only.
 */
#ifndef SY_CLI_QUEUE_H
#define SY_CLI_QUEUE_H

#include <stdint.h>
#include <stdio.h>

#include "gateway/config.h"
#include "gateway/queue.h"
#include "rules/hold.h"

/* Runs `queue <argv[0]> ...` against cfg (borrowed); output to out, errors
 * to stderr. Returns the exit code (0 ok, 1 failure, 2 usage). */
int cli_queue(const struct config *cfg, int argc, char **argv, FILE *out);

/* `hold add --apply`: holds every queued recipient of this node that rule
 * r (borrowed) matches, as held by rule id. *nheld gets the count. SY_OK
 * or an error in err. */
int cli_queue_apply_rule(struct queue *q, uint64_t id, const struct hold_rule *r, size_t *nheld,
                         struct sy_err *err);

#endif
