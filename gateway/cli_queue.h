/* cli_queue.h - `switchyard queue list|show|rebuild`
 *
 * Thread safety: main thread only.
 */
#ifndef SY_CLI_QUEUE_H
#define SY_CLI_QUEUE_H

#include <stdio.h>

#include "gateway/config.h"

/* Runs `queue <argv[0]> ...` against cfg (borrowed); output to out, errors
 * to stderr. Returns the exit code. */
int cli_queue(const struct config *cfg, int argc, char **argv, FILE *out);

#endif
