/* relay.h - the smtp, submission, submissions (and lmtp) transports
 *
 * Delivers through the SMTP client (gateway/smtp/client.h) to the
 * transport's configured host: STARTTLS or implicit TLS as the transport's
 * tls setting says, AUTH through libgsasl, PIPELINING, SIZE, 8BITMIME,
 * SMTPUTF8, DSN and REQUIRETLS. Keeps a cache of idle authenticated
 * connections per transport (several transactions per connection, RSET
 * before each reuse, closed with QUIT after the transport's idle_timeout)
 * and never holds more than the transport's max_connections connections
 * at once, busy or idle. A delivery that finds every connection busy
 * waits up to 10 s, then returns with att->not_attempted set and every
 * recipient deferred (4.4.5). LMTP goes to host:port or to a UNIX socket.
 *
 * Thread safety: struct relay is shared by all delivery workers;
 * relay_deliver() may run in any number of threads at once.
 */
#ifndef SY_TRANSPORT_RELAY_H
#define SY_TRANSPORT_RELAY_H

#include <stddef.h>

#include "gateway/config.h"
#include "gateway/transport/transport.h"

struct relay;   /* opaque */

/* Returns a new relay owned by the caller (relay_free()); cfg borrowed,
 * must outlive it. */
struct relay *relay_new(const struct config *cfg);
void relay_free(struct relay *r);          /* QUITs idle connections; NULL ok */
void relay_tick(struct relay *r);          /* closes connections idle too long */

/* transport_deliver() for t->type smtp, submission, submissions (and lmtp
 * when supported): same contract as in transport.h. */
int relay_deliver(struct relay *r, const struct cfg_transport *t,
                  const struct transport_msg *msg, struct transport_rcpt *rcpts,
                  size_t n, struct transport_attempt *att);

#endif
