/* queue.c - the Redis-backed queue index: its operations
 *
 * Every change that touches more than one key is one Lua script, sent by
 * EVALSHA (EVAL when the server answers NOSCRIPT), so Redis applies it
 * whole or not at all; each script is written so that running it twice
 * leaves the same state as running it once (docs/redis-schema.md). Values
 * travel as length-counted arguments, never through a format string.
 *
 * The connection layer (reply size caps, one deadline per command, the
 * pool, EVALSHA/EVAL) is queue_conn.c, reached through queue_int.h; the
 * scripts' texts stay here, beside the code that builds their arguments.
 * Every reply is hostile input (research/reliability.md B6): each element
 * used is checked here for type, length and range, and a reply of the
 * wrong shape marks the connection broken (queue_unexpected), so
 * queue_put() closes it: a late reply would otherwise answer the next
 * command.
 *
 * Thread safety: the operations keep no state of their own; a struct queue
 * is used by one thread at a time.
 */
#include "gateway/queue.h"

#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/queue_int.h"
#include "gateway/util/buf.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

/* Recipients per message we store or read back. Postfix's
 * smtpd_recipient_limit default is 1000; this is a sanity bound on data
 * read from Redis, not a policy. */
#define QUEUE_RCPT_MAX ((size_t) 100000)
/* Most recipients claimed or ids listed in one round trip. */
#define QUEUE_BATCH_MAX ((size_t) 10000)
/* Stored last reply / transport name are cut here: 64 bytes is Redis's
 * hash-max-listpack-value default, and one longer value turns the
 * recipient's hash from a ~400-byte listpack into a hashtable of over
 * 1 KiB (docs/redis-schema.md). The full reply is in the log record. */
#define QUEUE_LAST_REPLY_MAX ((size_t) 64)
#define QUEUE_TRANSPORT_MAX ((size_t) 64)

/* The scripts. KEYS are declared (all in the node's hash slot); recipient
 * keys are built inside the script from the declared prefix, which shares
 * the same {node} hash tag, so Redis Cluster serves them from one slot.
 *
 * Redis refuses a script under maxmemory only at its first write, so an
 * -OOM leaves nothing behind. Other mid-script errors (a key of the wrong
 * type) do not roll back what was written, so the writes are ordered for
 * that case: INSERT writes the message hash (what makes a retry a no-op)
 * last, so a retry redoes the whole insert; RECORD marks the recipient
 * before counting it final in the message, so a cut-short run can leave a
 * message never "done" (spool file kept) but never done too early. A
 * deletion (HDEL) is allowed under maxmemory and, as a script's first
 * write, would let the writes after it past the -OOM check: RECORD
 * deletes only after its first write.
 *
 * INSERT: KEYS msg sched held index [dedup]; ARGV rcpt-key-prefix
 * ("P:{N}:rcpt:QID:"), qid, next_ms, m, m message field/value args, nrcpt,
 * then per recipient: held ("" scheduled, else its held set score: "0"
 * for a plain hold, a hold rule's end or "+inf", the rule id then being
 * among the recipient's fields as held_by), c, c field/value args, then
 * (with the dedup key) its lifetime in seconds. Returns 1 when written, 0 when
 * the message already existed (nothing changed), or, with a dedup key that
 * is already set, the queue id it names (nothing changed: this message is
 * a retry of that one). The message hash is the marker: it is written
 * last, after the dedup key. */
static const char queue_lua_insert[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "if #KEYS >= 5 then\n"
    "  local d = redis.call('GET', KEYS[5])\n"
    "  if d then return d end\n"
    "end\n"
    "local m = tonumber(ARGV[4])\n"
    "local p = 5 + m\n"
    "local n = tonumber(ARGV[p])\n"
    "p = p + 1\n"
    "for i = 0, n - 1 do\n"
    "  local c = tonumber(ARGV[p + 1])\n"
    "  local member = ARGV[2] .. ':' .. i\n"
    "  redis.call('HSET', ARGV[1] .. i, unpack(ARGV, p + 2, p + 1 + c))\n"
    "  if ARGV[p] ~= '' then\n"
    "    redis.call('ZADD', KEYS[3], ARGV[p], member)\n"
    "  else\n"
    "    redis.call('ZADD', KEYS[2], ARGV[3], member)\n"
    "  end\n"
    "  p = p + 2 + c\n"
    "end\n"
    "redis.call('ZADD', KEYS[4], 0, ARGV[2])\n"
    "if #KEYS >= 5 then redis.call('SET', KEYS[5], ARGV[2], 'EX', ARGV[p]) end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + m))\n"
    "return 1\n";

/* CLAIM: KEYS sched; ARGV now_ms, lease_until_ms, max, rcpt-key-base
 * ("P:{N}:rcpt:"), msg-key-base ("P:{N}:msg:"), msg_max. Returns eight
 * entries per claimed recipient: member, attempts, admin, reroute,
 * released_ms, delay_sent, dsn_pending ("" for an absent field) and the
 * claim token. Each claim counts the recipient's `claim` field up (a
 * damaged value restarts at 1) and stores the lease end in `lease_ms`:
 * RECORD and RENEW act only for the latest claim (the fence that keeps a
 * worker whose lease ran out from clobbering its successor's result), and
 * a release from a hold waits for the lease (queue_admin.c). A schedule entry whose
 * recipient is not "queued" (gone, final, held), or whose message record
 * is gone, is stale and is dropped instead of claimed.
 *
 * When the first max entries fill the batch, the entries that follow it
 * and belong to the same message as its last one are taken too, up to
 * msg_max more, read in chunks of QUEUE_CLAIM_CHUNK before anything is
 * changed (so the offsets hold). Members are "QID:IDX" and entries of
 * equal score sort by member, so the recipients of a message due at the
 * same time are contiguous: the batch no longer cuts such a message in
 * two (which would cost it a second SMTP transaction). */
#define QUEUE_CLAIM_CHUNK "100"
static const char queue_lua_claim[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])\n"
    "local xmax = tonumber(ARGV[6])\n"
    "if xmax > 0 and #due > 0 and #due == tonumber(ARGV[3]) then\n"
    "  local qid = string.match(due[#due], '^(.+):%d+$')\n"
    "  local off, got = #due, 0\n"
    "  while qid and got < xmax do\n"
    "    local want = math.min(xmax - got, " QUEUE_CLAIM_CHUNK ")\n"
    "    local more = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', off, want)\n"
    "    local stop = #more < want\n"
    "    for _, m in ipairs(more) do\n"
    "      if string.match(m, '^(.+):%d+$') ~= qid then stop = true; break end\n"
    "      due[#due + 1] = m\n"
    "      got = got + 1\n"
    "    end\n"
    "    if stop then break end\n"
    "    off = off + #more\n"
    "  end\n"
    "end\n"
    "local out = {}\n"
    "for _, member in ipairs(due) do\n"
    "  local k = ARGV[4] .. member\n"
    "  local qid = string.match(member, '^(.+):%d+$')\n"
    "  if qid and redis.call('HGET', k, 'state') == 'queued'\n"
    "     and redis.call('EXISTS', ARGV[5] .. qid) == 1 then\n"
    "    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)\n"
    "    local tok = math.floor(tonumber(redis.call('HGET', k, 'claim') or '0') or 0) + 1\n"
    "    if tok ~= tok or tok < 1 or tok >= 2^53 then tok = 1 end\n"
    "    tok = string.format('%.0f', tok)\n"
    "    redis.call('HSET', k, 'claim', tok, 'lease_ms', ARGV[2])\n"
    "    out[#out + 1] = member\n"
    "    local f = redis.call('HMGET', k, 'attempts', 'admin', 'reroute', 'released_ms', 'delay_sent',\n"
    "                         'dsn_pending')\n"
    "    out[#out + 1] = f[1] or '0'\n"
    "    for j = 2, 6 do out[#out + 1] = f[j] or '' end\n"
    "    out[#out + 1] = tok\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], member)\n"
    "  end\n"
    "end\n"
    "return out\n";

/* RENEW: KEYS sched; ARGV lease_until_ms, rcpt-key-base, then pairs of
 * member and claim token. Returns 1 or 0 per pair: 1 when the recipient's
 * `claim` is the token and it is queued (its schedule score and lease_ms
 * become lease_until_ms); 0 otherwise, and a held one (held while this
 * worker had it) loses its lease_ms, so a release makes it due at once. */
static const char queue_lua_renew[] =
    "local out = {}\n"
    "for i = 3, #ARGV - 1, 2 do\n"
    "  local m, k, ok = ARGV[i], ARGV[2] .. ARGV[i], 0\n"
    "  if redis.call('HGET', k, 'claim') == ARGV[i + 1] then\n"
    "    local st = redis.call('HGET', k, 'state')\n"
    "    if st == 'queued' then\n"
    "      redis.call('ZADD', KEYS[1], ARGV[1], m)\n"
    "      redis.call('HSET', k, 'lease_ms', ARGV[1])\n"
    "      ok = 1\n"
    "    elseif st == 'held' then\n"
    "      redis.call('HDEL', k, 'lease_ms')\n"
    "    end\n"
    "  end\n"
    "  out[#out + 1] = ok\n"
    "end\n"
    "return out\n";

/* RECORD: KEYS msg rcpt sched held index done hist; ARGV member, qid,
 * state ("queued"|"delivered"|"failed"), next_ms, at_ms, transport, reply,
 * counted ("1": an attempt; "0": nothing was tried, only reschedule),
 * delay_sent ("1": mark the delay DSN sent), history entry ("" none),
 * history length kept, claim token ("" unfenced), dsn_pending ("",
 * "relayed" or "delivered": delivered, DSN still to queue; state is then
 * "queued"). Returns -1 unknown recipient, 0 recorded, 1 recorded and the
 * message is done, 2 stale: the recipient's `claim` is no longer the
 * token (claimed again after the lease ran out), nothing changed. A
 * recipient already final, or a repeat of the same result (same at_ms),
 * changes nothing and reports the message's current state. Otherwise the
 * lease ends (lease_ms deleted). A recipient held while its attempt ran
 * stays held on a deferral (attempt and history are still recorded). A
 * recipient with dsn_pending was delivered already: a later result is no
 * counted attempt and leaves history, transport and last_reply alone;
 * "delivered" clears the flag and makes it final, "queued" reschedules. */
static const char queue_lua_record[] =
    "local st = redis.call('HGET', KEYS[2], 'state')\n"
    "if not st or redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "  redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "  return -1\n"
    "end\n"
    "if ARGV[12] ~= '' and redis.call('HGET', KEYS[2], 'claim') ~= ARGV[12] then return 2 end\n"
    "if st == 'delivered' or st == 'failed' or st == 'missing'\n"
    "   or redis.call('HGET', KEYS[2], 'last_ms') == ARGV[5] then\n"
    "  if redis.call('HGET', KEYS[1], 'state') == 'done' then return 1 end\n"
    "  return 0\n"
    "end\n"
    "local pend = redis.call('HGET', KEYS[2], 'dsn_pending')\n"
    "if pend then\n"
    "  if ARGV[3] == 'queued' then\n"
    "    redis.call('HSET', KEYS[2], 'last_ms', ARGV[5])\n"
    "    redis.call('HDEL', KEYS[2], 'lease_ms')\n"
    "    if st == 'queued' then\n"
    "      redis.call('HSET', KEYS[2], 'next_ms', ARGV[4])\n"
    "      redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])\n"
    "    end\n"
    "    return 0\n"
    "  end\n"
    "  redis.call('HSET', KEYS[2], 'state', ARGV[3], 'last_ms', ARGV[5])\n"
    "  redis.call('HDEL', KEYS[2], 'dsn_pending', 'lease_ms')\n"
    "else\n"
    "if ARGV[8] == '0' then\n"
    "  if st == 'queued' then\n"
    "    redis.call('HSET', KEYS[2], 'next_ms', ARGV[4])\n"
    "    redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])\n"
    "  end\n"
    "  redis.call('HDEL', KEYS[2], 'lease_ms')\n"
    "  return 0\n"
    "end\n"
    "if ARGV[10] ~= '' then\n"
    "  redis.call('RPUSH', KEYS[7], ARGV[10])\n"
    "  redis.call('LTRIM', KEYS[7], -tonumber(ARGV[11]), -1)\n"
    "end\n"
    "if ARGV[9] == '1' then redis.call('HSET', KEYS[2], 'delay_sent', '1') end\n"
    "if ARGV[13] ~= '' and ARGV[3] == 'queued' then redis.call('HSET', KEYS[2], 'dsn_pending', ARGV[13]) end\n"
    "redis.call('HINCRBY', KEYS[2], 'attempts', 1)\n"
    "redis.call('HDEL', KEYS[2], 'lease_ms')\n"
    "if st == 'held' and ARGV[3] == 'queued' then\n"
    "  redis.call('HSET', KEYS[2], 'last_ms', ARGV[5])\n"
    "  if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'transport', ARGV[6]) end\n"
    "  if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'last_reply', ARGV[7]) end\n"
    "  redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "  return 0\n"
    "end\n"
    "redis.call('HSET', KEYS[2], 'state', ARGV[3], 'last_ms', ARGV[5])\n"
    "if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'transport', ARGV[6])\n"
    "else redis.call('HDEL', KEYS[2], 'transport') end\n"
    "if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'last_reply', ARGV[7])\n"
    "else redis.call('HDEL', KEYS[2], 'last_reply') end\n"
    "end\n"
    "redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "if ARGV[3] == 'queued' then\n"
    "  redis.call('HSET', KEYS[2], 'next_ms', ARGV[4])\n"
    "  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])\n"
    "  return 0\n"
    "end\n"
    "redis.call('HDEL', KEYS[2], 'next_ms')\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "local nf = redis.call('HINCRBY', KEYS[1], 'nfinal', 1)\n"
    "local nr = tonumber(redis.call('HGET', KEYS[1], 'nrcpt'))\n"
    "if nr and nf >= nr then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'done')\n"
    "  redis.call('ZREM', KEYS[5], ARGV[2])\n"
    "  redis.call('ZADD', KEYS[6], 'NX', ARGV[5], ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* MISSING: KEYS msg sched held index done; ARGV rcpt-key-prefix, qid,
 * now_ms, max nrcpt. Returns -1 unknown message, 1 done. */
static const char queue_lua_missing[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "local n = tonumber(redis.call('HGET', KEYS[1], 'nrcpt')) or 0\n"
    "if n > tonumber(ARGV[4]) then return redis.error_reply('ERR nrcpt out of range') end\n"
    "for i = 0, n - 1 do\n"
    "  local k = ARGV[1] .. i\n"
    "  local member = ARGV[2] .. ':' .. i\n"
    "  local s = redis.call('HGET', k, 'state')\n"
    "  if s == 'queued' or s == 'held' then\n"
    "    redis.call('HSET', k, 'state', 'missing')\n"
    "    redis.call('HDEL', k, 'next_ms', 'lease_ms')\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[2], member)\n"
    "  redis.call('ZREM', KEYS[3], member)\n"
    "end\n"
    "if redis.call('HGET', KEYS[1], 'state') ~= 'done' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'missing')\n"
    "end\n"
    "redis.call('ZREM', KEYS[4], ARGV[2])\n"
    "redis.call('ZADD', KEYS[5], 'NX', ARGV[3], ARGV[2])\n"
    "return 1\n";

/* SHOW (read-only): KEYS msg sched; ARGV rcpt-key-prefix, qid, max nrcpt,
 * hist-key-prefix ("P:{N}:hist:QID:"). Returns {} when unknown, else
 * {msg-fields, rcpt0-fields, score0-or-nil, hist0, rcpt1-fields, ...}. */
static const char queue_lua_show[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "if #h == 0 then return {} end\n"
    "local n = tonumber(redis.call('HGET', KEYS[1], 'nrcpt')) or 0\n"
    "if n > tonumber(ARGV[3]) then return redis.error_reply('ERR nrcpt out of range') end\n"
    "local out = {h}\n"
    "for i = 0, n - 1 do\n"
    "  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. i)\n"
    "  out[#out + 1] = redis.call('ZSCORE', KEYS[2], ARGV[2] .. ':' .. i)\n"
    "  out[#out + 1] = redis.call('LRANGE', ARGV[4] .. i, 0, -1)\n"
    "end\n"
    "return out\n";

/* PURGE: KEYS done; ARGV before_ms, max, msg-key-base ("P:{N}:msg:"),
 * rcpt-key-base ("P:{N}:rcpt:"), max nrcpt, hist-key-base ("P:{N}:hist:").
 * Deletes up to max finished messages whose finish time is at or before
 * before_ms, with their recipient records and attempt histories, and
 * returns how many. A message is deleted whole or not at all. */
static const char queue_lua_purge[] =
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))\n"
    "for _, id in ipairs(ids) do\n"
    "  local n = tonumber(redis.call('HGET', ARGV[3] .. id, 'nrcpt')) or 0\n"
    "  if n > tonumber(ARGV[5]) then n = tonumber(ARGV[5]) end\n"
    "  for i = 0, n - 1 do\n"
    "    redis.call('DEL', ARGV[4] .. id .. ':' .. i, ARGV[6] .. id .. ':' .. i)\n"
    "  end\n"
    "  redis.call('DEL', ARGV[3] .. id)\n"
    "  redis.call('ZREM', KEYS[1], id)\n"
    "end\n"
    "return #ids\n";

/* queue_dsn_name - the stored value of field dsn_pending ("" for none) */
static const char *queue_dsn_name(int p)
{
    return p == QUEUE_DSN_RELAYED ? "relayed" : p == QUEUE_DSN_DELIVERED ? "delivered" : "";
}

/* queue_dsn_parse - field dsn_pending to enum queue_dsn_pending; -1 when
 * unknown */
static int queue_dsn_parse(const char *s, size_t n)
{
    if (n == 0)
        return QUEUE_DSN_NONE;
    if (n == 7 && memcmp(s, "relayed", 7) == 0)
        return QUEUE_DSN_RELAYED;
    if (n == 9 && memcmp(s, "delivered", 9) == 0)
        return QUEUE_DSN_DELIVERED;
    return -1;
}

/* queue_state_name - the stored name of a recipient state */
const char *queue_state_name(int state)
{
    switch (state) {
    case QUEUE_QUEUED: return "queued";
    case QUEUE_HELD: return "held";
    case QUEUE_DELIVERED: return "delivered";
    case QUEUE_FAILED: return "failed";
    case QUEUE_MISSING: return "missing";
    default: return "unknown";
    }
}

/* queue_state_parse - stored name to enum queue_state; -1 when unknown */
static int queue_state_parse(const char *s, size_t n)
{
    for (int st = QUEUE_QUEUED; st <= QUEUE_MISSING; st++) {
        const char *name = queue_state_name(st);

        if (strlen(name) == n && memcmp(name, s, n) == 0)
            return st;
    }
    return -1;
}

/* ---- operations --------------------------------------------------------- */

int queue_ping(struct queue *q, struct sy_err *err)
{
    const char *argv[1] = { "PING" };
    redisReply *r;
    int ok;

    if (queue_cmd_str(q, 1, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    ok = r->type == REDIS_REPLY_STATUS && r->len == 4 && memcmp(r->str, "PONG", 4) == 0;
    freeReplyObject(r);
    return ok ? SY_OK : queue_unexpected(q, "PING", err);
}

int queue_exists(struct queue *q, const char *qid, struct sy_err *err)
{
    char key[QUEUE_KEY_MAX];
    const char *argv[2] = { "EXISTS", key };
    redisReply *r;
    long long v;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    queue_key(q, key, sizeof(key), "msg:%s", qid);
    if (queue_cmd_str(q, 2, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (v != 0 && v != 1)
        return queue_unexpected(q, "EXISTS", err);
    return (int) v;
}

/* queue_ret_name / queue_body_name - stored names of the DSN parameters */
static const char *queue_ret_name(int ret)
{
    return ret == ENV_RET_FULL ? "FULL" : ret == ENV_RET_HDRS ? "HDRS" : NULL;
}

static const char *queue_body_name(int body)
{
    return body == ENV_BODY_7BIT ? "7BIT" : body == ENV_BODY_8BITMIME ? "8BITMIME" : NULL;
}

/* queue_insert_common - INSERT, with an optional duplicate digest and the
 * hold rules of rule-held recipients */
static int queue_insert_common(struct queue *q, const char *qid, const struct envelope *env,
                               const unsigned char *held, const struct queue_hold_tag *tags,
                               size_t ntags, int64_t next_ms, const char *digest,
                               int64_t ttl_s, char dup_qid[QID_SIZE], struct sy_err *err)
{
    char msgkey[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX], heldkey[QUEUE_KEY_MAX];
    char index[QUEUE_KEY_MAX], rcptpfx[QUEUE_KEY_MAX], dedup[QUEUE_KEY_MAX];
    const struct queue_hold_tag **bytag = NULL;
    struct queue_args a;
    redisReply *r;
    size_t mslot, nmsg;
    long long v;
    int rc;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    if (env == NULL || env->sender == NULL || env->nrcpt == 0 || next_ms < 0)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: insert %s: incomplete envelope", qid);
    if (digest != NULL && (!queue_name_ok(digest, 64) || ttl_s <= 0))
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: insert %s: bad duplicate digest", qid);
    if (env->nrcpt > QUEUE_RCPT_MAX)
        return sy_err_set(err, SY_ETOOBIG, "4.5.3", "queue: insert %s: %zu recipients (at most %zu)",
                          qid, env->nrcpt, QUEUE_RCPT_MAX);
    for (size_t i = 0; i < env->nrcpt; i++)
        if (env->rcpts[i].addr == NULL || env->rcpts[i].addr[0] == '\0')
            return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: insert %s: recipient %zu has no address",
                              qid, i);
    if (ntags > 0) {
        /* One rule per recipient, named by a usable id. */
        bytag = xcalloc(env->nrcpt, sizeof(*bytag));   /* NOLINT(bugprone-sizeof-expression): an array of pointers */
        for (size_t i = 0; i < ntags; i++) {
            const struct queue_hold_tag *t = &tags[i];

            if (t->idx >= env->nrcpt || bytag[t->idx] != NULL || t->rule == 0 ||
                t->rule > INT64_MAX || t->until < 0) {
                free(bytag);
                return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: insert %s: bad hold tag", qid);
            }
            bytag[t->idx] = t;
        }
    }

    queue_key(q, msgkey, sizeof(msgkey), "msg:%s", qid);
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, heldkey, sizeof(heldkey), "held");
    queue_key(q, index, sizeof(index), "index");
    queue_key(q, rcptpfx, sizeof(rcptpfx), "rcpt:%s:", qid);
    if (digest != NULL)
        queue_key(q, dedup, sizeof(dedup), "dedup:%s", digest);

    queue_script_args(&a);
    queue_args_str(&a, msgkey);
    queue_args_str(&a, sched);
    queue_args_str(&a, heldkey);
    queue_args_str(&a, index);
    if (digest != NULL)
        queue_args_str(&a, dedup);
    queue_args_str(&a, rcptpfx);
    queue_args_str(&a, qid);
    queue_args_i64(&a, next_ms);
    mslot = a.n;
    queue_args_i64(&a, 0);      /* message argument count, set below */

    /* Absent optional fields are omitted, not stored as "" (memory). */
    queue_args_field(&a, "sender", env->sender);
    queue_args_field_i64(&a, "arrival_us", env->arrival_us);
    queue_args_field_i64(&a, "size", env->size > INT64_MAX ? INT64_MAX : (int64_t) env->size);
    if (env->size_declared > 0)
        queue_args_field_i64(&a, "size_declared", env->size_declared > INT64_MAX ? INT64_MAX
                                                                                 : (int64_t) env->size_declared);
    queue_args_field_i64(&a, "nrcpt", (int64_t) env->nrcpt);
    queue_args_field(&a, "listener", env->listener);
    queue_args_field(&a, "client_addr", env->client_addr);
    queue_args_field(&a, "client_name", env->client_name);
    queue_args_field(&a, "mta_qid", env->mta_qid);
    queue_args_field(&a, "envid", env->envid);
    queue_args_field(&a, "ret", queue_ret_name(env->ret));
    queue_args_field(&a, "body", queue_body_name(env->body));
    if (env->flags != 0)
        queue_args_field_i64(&a, "flags", env->flags);
    if (env->hold_until != 0)
        queue_args_field_i64(&a, "hold_until", env->hold_until);
    queue_args_field(&a, "message_id", env->message_id);
    queue_args_field(&a, "auth_user", env->auth_user);
    queue_args_field(&a, "state", "active");
    nmsg = a.n - mslot - 1;
    queue_args_set_i64(&a, mslot, (int64_t) nmsg);

    queue_args_i64(&a, (int64_t) env->nrcpt);
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *er = &env->rcpts[i];
        const struct queue_hold_tag *t = bytag != NULL ? bytag[i] : NULL;
        int is_held = t != NULL || (held != NULL && held[i] != 0);
        size_t cslot, start;

        /* The held set score (queue_admin.c): the rule's end, else 0. */
        if (t != NULL && t->until > 0)
            queue_args_i64(&a, t->until);
        else
            queue_args_str(&a, t != NULL ? "+inf" : is_held ? "0" : "");
        cslot = a.n;
        queue_args_i64(&a, 0);
        start = a.n;
        queue_args_field(&a, "addr", er->addr);
        queue_args_field(&a, "state", is_held ? "held" : "queued");
        queue_args_field_i64(&a, "next_ms", next_ms);
        if (t != NULL)
            queue_args_field_i64(&a, "held_by", (int64_t) t->rule);
        if (er->notify != 0)
            queue_args_field_i64(&a, "notify", er->notify);
        queue_args_field(&a, "orcpt_type", er->orcpt_type);
        queue_args_field(&a, "orcpt_addr", er->orcpt_addr);
        queue_args_set_i64(&a, cslot, (int64_t) (a.n - start));
    }

    if (digest != NULL)
        queue_args_i64(&a, ttl_s);

    free(bytag);
    rc = queue_script(q, QS_INSERT, queue_lua_insert, &a, digest != NULL ? 5 : 4, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (dup_qid != NULL)
        dup_qid[0] = '\0';
    if (digest != NULL && r->type == REDIS_REPLY_STRING) {
        /* The digest names an earlier message: this one is its retry. */
        int ok = r->len == QID_LEN && dup_qid != NULL;

        if (ok) {
            memcpy(dup_qid, r->str, QID_LEN);
            dup_qid[QID_LEN] = '\0';
            ok = qid_valid(dup_qid);
        }
        freeReplyObject(r);
        if (!ok) {
            if (dup_qid != NULL)
                dup_qid[0] = '\0';
            return queue_unexpected(q, "insert", err);
        }
        return SY_OK;
    }
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (v != 0 && v != 1)
        return queue_unexpected(q, "insert", err);
    return SY_OK;
}

int queue_insert(struct queue *q, const char *qid, const struct envelope *env,
                 const unsigned char *held, int64_t next_ms, struct sy_err *err)
{
    return queue_insert_common(q, qid, env, held, NULL, 0, next_ms, NULL, 0, NULL, err);
}

int queue_insert_dedup(struct queue *q, const char *qid, const struct envelope *env,
                       const unsigned char *held, int64_t next_ms, const char *digest,
                       int64_t ttl_s, char dup_qid[QID_SIZE], struct sy_err *err)
{
    return queue_insert_common(q, qid, env, held, NULL, 0, next_ms, digest, ttl_s, dup_qid, err);
}

int queue_insert_held(struct queue *q, const char *qid, const struct envelope *env,
                      const unsigned char *held, const struct queue_hold_tag *tags, size_t ntags,
                      int64_t next_ms, const char *digest, int64_t ttl_s, char dup_qid[QID_SIZE],
                      struct sy_err *err)
{
    if (ntags > 0 && tags == NULL)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: insert: no hold tags");
    return queue_insert_common(q, qid, env, held, tags, ntags, next_ms, digest, ttl_s, dup_qid, err);
}

int queue_mark_missing(struct queue *q, const char *qid, struct sy_err *err)
{
    char msgkey[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX], heldkey[QUEUE_KEY_MAX];
    char index[QUEUE_KEY_MAX], done[QUEUE_KEY_MAX], rcptpfx[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *r;
    long long v;
    int rc;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    queue_key(q, msgkey, sizeof(msgkey), "msg:%s", qid);
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, heldkey, sizeof(heldkey), "held");
    queue_key(q, index, sizeof(index), "index");
    queue_key(q, done, sizeof(done), "done");
    queue_key(q, rcptpfx, sizeof(rcptpfx), "rcpt:%s:", qid);

    queue_script_args(&a);
    queue_args_str(&a, msgkey);
    queue_args_str(&a, sched);
    queue_args_str(&a, heldkey);
    queue_args_str(&a, index);
    queue_args_str(&a, done);
    queue_args_str(&a, rcptpfx);
    queue_args_str(&a, qid);
    queue_args_i64(&a, clock_real_ms());
    queue_args_i64(&a, (int64_t) QUEUE_RCPT_MAX);
    rc = queue_script(q, QS_MISSING, queue_lua_missing, &a, 5, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    freeReplyObject(r);
    if (v == -1)
        return sy_err_set(err, SY_ENOTFOUND, "4.3.0", "queue: no such message %s", qid);
    if (v != 1)
        return queue_unexpected(q, "mark missing", err);
    return SY_OK;
}

/* Entries per claimed recipient in the CLAIM reply. */
#define QUEUE_CLAIM_FIELDS ((size_t) 8)

/* queue_claim_extra - admin, reroute, released_ms, delay_sent,
 * dsn_pending and the token of a CLAIM reply into c; -1 when malformed */
static int queue_claim_extra(redisReply *const *f, struct queue_claim *c)
{
    uint64_t u;

    if (f[0]->len == 0)
        c->admin = QUEUE_ADMIN_NONE;
    else if (f[0]->len == 4 && memcmp(f[0]->str, "fail", 4) == 0)
        c->admin = QUEUE_ADMIN_FAIL;
    else if (f[0]->len == 4 && memcmp(f[0]->str, "drop", 4) == 0)
        c->admin = QUEUE_ADMIN_DROP;
    else
        return -1;
    c->reroute[0] = '\0';
    if (f[1]->len > 0) {
        if (f[1]->len >= QUEUE_CLAIM_TRANSPORT_SIZE)
            return -1;
        memcpy(c->reroute, f[1]->str, f[1]->len);
        c->reroute[f[1]->len] = '\0';
        if (!queue_name_ok(c->reroute, QUEUE_CLAIM_TRANSPORT_SIZE - 1))
            return -1;
    }
    c->released_ms = 0;
    if (f[2]->len > 0) {
        if (queue_parse_u64(f[2], INT64_MAX, &u) != 0)
            return -1;
        c->released_ms = (int64_t) u;
    }
    c->delay_sent = f[3]->len == 1 && f[3]->str[0] == '1';
    c->dsn_pending = queue_dsn_parse(f[4]->str, f[4]->len);
    if (c->dsn_pending < 0)
        return -1;
    if (queue_parse_u64(f[5], INT64_MAX, &u) != 0 || u == 0)
        return -1;
    c->token = u;
    return 0;
}

/* queue_parse_member - "QID:IDX" into a claim; -1 when malformed */
static int queue_parse_member(const redisReply *m, struct queue_claim *c)
{
    uint64_t idx;

    if (m->type != REDIS_REPLY_STRING || m->len < QID_LEN + 2 || m->str[QID_LEN] != ':')
        return -1;
    memcpy(c->qid, m->str, QID_LEN);
    c->qid[QID_LEN] = '\0';
    if (!qid_valid(c->qid))
        return -1;
    if (text_parse_u64(m->str + QID_LEN + 1, m->len - QID_LEN - 1, 0, QUEUE_RCPT_MAX - 1, &idx) != SY_OK)
        return -1;
    c->idx = (unsigned) idx;
    return 0;
}

int queue_claim_due(struct queue *q, int64_t now_ms, int64_t lease_ms,
                    struct queue_claim *out, size_t max, size_t *nout,
                    struct sy_err *err)
{
    return queue_claim_due_msg(q, now_ms, lease_ms, out, max, 0, nout, err);
}

int queue_claim_due_msg(struct queue *q, int64_t now_ms, int64_t lease_ms,
                        struct queue_claim *out, size_t max, size_t msg_max, size_t *nout,
                        struct sy_err *err)
{
    char sched[QUEUE_KEY_MAX], rcptbase[QUEUE_KEY_MAX], msgbase[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *r;
    size_t n = 0;
    int rc;

    *nout = 0;
    if (max == 0)
        return SY_OK;
    if (max > QUEUE_BATCH_MAX)
        max = QUEUE_BATCH_MAX;
    if (msg_max > QUEUE_BATCH_MAX)
        msg_max = QUEUE_BATCH_MAX;
    if (now_ms < 0 || lease_ms < 0 || lease_ms > INT64_MAX - now_ms)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: claim: bad time or lease");
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, rcptbase, sizeof(rcptbase), "rcpt:");
    queue_key(q, msgbase, sizeof(msgbase), "msg:");

    queue_script_args(&a);
    queue_args_str(&a, sched);
    queue_args_i64(&a, now_ms);
    queue_args_i64(&a, now_ms + lease_ms);
    queue_args_i64(&a, (int64_t) max);
    queue_args_str(&a, rcptbase);
    queue_args_str(&a, msgbase);
    queue_args_i64(&a, (int64_t) msg_max);
    rc = queue_script(q, QS_CLAIM, queue_lua_claim, &a, 1, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % QUEUE_CLAIM_FIELDS != 0 ||
        r->elements / QUEUE_CLAIM_FIELDS > max + msg_max) {
        freeReplyObject(r);
        return queue_unexpected(q, "claim", err);
    }
    for (size_t i = 0; i < r->elements; i += QUEUE_CLAIM_FIELDS) {
        const redisReply *m = r->element[i], *att = r->element[i + 1];
        uint64_t attempts;

        for (size_t j = 0; j < QUEUE_CLAIM_FIELDS; j++) {
            if (r->element[i + j]->type != REDIS_REPLY_STRING) {
                freeReplyObject(r);
                return queue_unexpected(q, "claim", err);
            }
        }
        memset(&out[n], 0, sizeof(out[n]));
        if (queue_parse_member(m, &out[n]) != 0 || queue_parse_u64(att, UINT_MAX, &attempts) != 0 ||
            queue_claim_extra(r->element + i + 2, &out[n]) != 0) {
            /* Leased, so it comes back after the lease; say so once each time. */
            char safe[QUEUE_PEER_TEXT_MAX];

            log_warn(NULL, "queue: schedule entry skipped, malformed: %s",
                     log_safe_n(safe, sizeof(safe), m->str, m->len));
            continue;
        }
        out[n].attempts = (unsigned) attempts;
        n++;
    }
    freeReplyObject(r);
    *nout = n;
    return SY_OK;
}

int queue_lease_renew(struct queue *q, const struct queue_claim *c, size_t n,
                      int64_t lease_until_ms, unsigned char *kept, struct sy_err *err)
{
    char sched[QUEUE_KEY_MAX], rcptbase[QUEUE_KEY_MAX];
    char (*members)[QID_SIZE + QUEUE_NUM_SIZE];
    struct queue_args a;
    redisReply *r;
    int rc;

    if (n == 0)
        return SY_OK;
    memset(kept, 0, n);
    if (n > QUEUE_BATCH_MAX * 2 || lease_until_ms < 0)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: renew: bad arguments");
    for (size_t i = 0; i < n; i++)
        if (queue_check_qid(c[i].qid, err) != SY_OK || c[i].idx >= QUEUE_RCPT_MAX ||
            c[i].token == 0 || c[i].token > INT64_MAX)
            return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: renew: bad claim");
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, rcptbase, sizeof(rcptbase), "rcpt:");
    queue_script_args(&a);
    queue_args_str(&a, sched);
    queue_args_i64(&a, lease_until_ms);
    queue_args_str(&a, rcptbase);
    /* The arguments borrow their strings until the script ran. */
    members = xcalloc(n, sizeof(*members));
    for (size_t i = 0; i < n; i++) {
        (void) snprintf(members[i], sizeof(members[i]), "%s:%u", c[i].qid, c[i].idx);
        queue_args_str(&a, members[i]);
        queue_args_i64(&a, (int64_t) c[i].token);
    }
    rc = queue_script(q, QS_RENEW, queue_lua_renew, &a, 1, &r, err);
    queue_args_free(&a);
    free(members);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        freeReplyObject(r);
        return queue_unexpected(q, "renew", err);
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_INTEGER || (e->integer != 0 && e->integer != 1)) {
            memset(kept, 0, n);
            freeReplyObject(r);
            return queue_unexpected(q, "renew", err);
        }
        kept[i] = (unsigned char) e->integer;
    }
    freeReplyObject(r);
    return SY_OK;
}

int queue_purge_done(struct queue *q, int64_t before_ms, size_t max, size_t *npurged,
                     struct sy_err *err)
{
    char done[QUEUE_KEY_MAX], rcptbase[QUEUE_KEY_MAX], msgbase[QUEUE_KEY_MAX];
    char histbase[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *r;
    int rc;

    *npurged = 0;
    if (max == 0)
        return SY_OK;
    if (max > QUEUE_BATCH_MAX)
        max = QUEUE_BATCH_MAX;
    queue_key(q, done, sizeof(done), "done");
    queue_key(q, rcptbase, sizeof(rcptbase), "rcpt:");
    queue_key(q, msgbase, sizeof(msgbase), "msg:");
    queue_key(q, histbase, sizeof(histbase), "hist:");
    queue_script_args(&a);
    queue_args_str(&a, done);
    queue_args_i64(&a, before_ms);
    queue_args_i64(&a, (int64_t) max);
    queue_args_str(&a, msgbase);
    queue_args_str(&a, rcptbase);
    queue_args_i64(&a, (int64_t) QUEUE_RCPT_MAX);
    queue_args_str(&a, histbase);
    rc = queue_script(q, QS_PURGE, queue_lua_purge, &a, 1, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0 || (size_t) r->integer > max) {
        freeReplyObject(r);
        return queue_unexpected(q, "purge", err);
    }
    *npurged = (size_t) r->integer;
    freeReplyObject(r);
    return SY_OK;
}

int queue_next_due(struct queue *q, int64_t *when_ms, struct sy_err *err)
{
    char sched[QUEUE_KEY_MAX];
    const char *argv[5] = { "ZRANGE", sched, "0", "0", "WITHSCORES" };
    redisReply *r;
    int64_t v = 0;

    *when_ms = INT64_MAX;
    queue_key(q, sched, sizeof(sched), "sched");
    if (queue_cmd_str(q, 5, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 0 && r->elements != 2) ||
        (r->elements == 2 && (r->element[0]->type != REDIS_REPLY_STRING ||
                              queue_parse_score(r->element[1], &v) != 0))) {
        freeReplyObject(r);
        return queue_unexpected(q, "ZRANGE", err);
    }
    if (r->elements == 2)
        *when_ms = v;
    freeReplyObject(r);
    return SY_OK;
}

/* Longest stored history entry: 7 bounded fields, the reply, two numbers. */
#define QUEUE_HIST_ENTRY_MAX (7 * QUEUE_HIST_FIELD_MAX + QUEUE_HIST_REPLY_MAX + 64)
/* Fields of a stored history entry, tab-separated. */
#define QUEUE_HIST_NFIELDS 9

/* queue_hist_field - one field of a history entry: tabs, CR, LF and other
 * controls become spaces (they separate fields and lines), cut at max
 * bytes on a UTF-8 character boundary */
static void queue_hist_field(struct buf *b, const char *s, size_t max, int last)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if ((unsigned char) c < 0x20 || c == 0x7f)
            c = ' ';

        (void) buf_append(b, &c, 1);
    }
    if (!last)
        (void) buf_append(b, "\t", 1);
}

/* queue_hist_encode - "at_ms TAB duration_ms TAB state TAB transport TAB
 * route TAB host TAB addr TAB tls TAB reply" (docs/redis-schema.md) */
static void queue_hist_encode(struct buf *b, const struct queue_result *res)
{
    const struct queue_attempt *h = res->hist;
    const char *st = res->state == QUEUE_DELIVERED || res->dsn_pending != QUEUE_DSN_NONE ? "delivered" :
                     res->state == QUEUE_FAILED ? "failed" : "deferred";

    (void) buf_printf(b, "%lld\t%lld\t%s\t", (long long) h->at_ms,
                      (long long) (h->duration_ms < 0 ? 0 : h->duration_ms), st);
    queue_hist_field(b, h->transport, QUEUE_HIST_FIELD_MAX, 0);
    queue_hist_field(b, h->route, QUEUE_HIST_FIELD_MAX, 0);
    queue_hist_field(b, h->remote_host, QUEUE_HIST_FIELD_MAX, 0);
    queue_hist_field(b, h->remote_addr, QUEUE_HIST_FIELD_MAX, 0);
    queue_hist_field(b, h->tls, QUEUE_HIST_FIELD_MAX, 0);
    queue_hist_field(b, h->reply, QUEUE_HIST_REPLY_MAX, 1);
}

int queue_record_result(struct queue *q, const char *qid, unsigned idx,
                        const struct queue_result *res, int *all_final,
                        struct sy_err *err)
{
    char msgkey[QUEUE_KEY_MAX], rcptkey[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX];
    char heldkey[QUEUE_KEY_MAX], index[QUEUE_KEY_MAX], done[QUEUE_KEY_MAX];
    char histkey[QUEUE_KEY_MAX];
    char member[QID_SIZE + QUEUE_NUM_SIZE];
    const char *transport, *reply;
    size_t tlen, rlen;
    struct queue_args a;
    struct buf hist;
    redisReply *r;
    long long v;
    int rc;

    if (all_final != NULL)
        *all_final = 0;
    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    if (res == NULL || idx >= QUEUE_RCPT_MAX || res->at_ms < 0 ||
        (res->state != QUEUE_QUEUED && res->state != QUEUE_DELIVERED && res->state != QUEUE_FAILED) ||
        (res->state == QUEUE_QUEUED && res->next_ms < 0) ||
        (res->not_attempted && res->state != QUEUE_QUEUED) || res->token > INT64_MAX ||
        (res->dsn_pending != QUEUE_DSN_NONE &&
         (res->state != QUEUE_QUEUED || res->not_attempted || queue_dsn_name(res->dsn_pending)[0] == '\0')))
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: record %s: bad result", qid);
    transport = res->transport != NULL ? res->transport : "";
    reply = res->reply != NULL ? res->reply : "";
    tlen = strlen(transport);
    if (tlen > QUEUE_TRANSPORT_MAX)
        tlen = QUEUE_TRANSPORT_MAX;
    rlen = strlen(reply);
    if (rlen > QUEUE_LAST_REPLY_MAX) {
        /* Cut on a UTF-8 character boundary. */
        rlen = QUEUE_LAST_REPLY_MAX;
        while (rlen > 0 && ((unsigned char) reply[rlen] & 0xC0) == 0x80)
            rlen--;
    }

    queue_key(q, msgkey, sizeof(msgkey), "msg:%s", qid);
    queue_key(q, rcptkey, sizeof(rcptkey), "rcpt:%s:%u", qid, idx);
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, heldkey, sizeof(heldkey), "held");
    queue_key(q, index, sizeof(index), "index");
    queue_key(q, done, sizeof(done), "done");
    queue_key(q, histkey, sizeof(histkey), "hist:%s:%u", qid, idx);
    (void) snprintf(member, sizeof(member), "%s:%u", qid, idx);
    buf_init(&hist, QUEUE_HIST_ENTRY_MAX);
    if (res->hist != NULL && !res->not_attempted)
        queue_hist_encode(&hist, res);

    queue_script_args(&a);
    queue_args_str(&a, msgkey);
    queue_args_str(&a, rcptkey);
    queue_args_str(&a, sched);
    queue_args_str(&a, heldkey);
    queue_args_str(&a, index);
    queue_args_str(&a, done);
    queue_args_str(&a, histkey);
    queue_args_str(&a, member);
    queue_args_str(&a, qid);
    queue_args_str(&a, queue_state_name(res->state));
    queue_args_i64(&a, res->state == QUEUE_QUEUED ? res->next_ms : 0);
    queue_args_i64(&a, res->at_ms);
    queue_args_mem(&a, transport, tlen);
    queue_args_mem(&a, reply, rlen);
    queue_args_str(&a, res->not_attempted ? "0" : "1");
    queue_args_str(&a, res->delay_sent ? "1" : "0");
    queue_args_mem(&a, buf_str(&hist), hist.len);
    queue_args_i64(&a, QUEUE_HIST_MAX);
    if (res->token != 0)
        queue_args_i64(&a, (int64_t) res->token);
    else
        queue_args_str(&a, "");
    queue_args_str(&a, queue_dsn_name(res->dsn_pending));
    rc = queue_script(q, QS_RECORD, queue_lua_record, &a, 7, &r, err);
    queue_args_free(&a);
    buf_free(&hist);
    if (rc != SY_OK)
        return SY_ETEMP;
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    freeReplyObject(r);
    if (v == -1)
        return sy_err_set(err, SY_ENOTFOUND, "4.3.0", "queue: no such recipient %s:%u", qid, idx);
    if (v == 2)
        return QUEUE_STALE;
    if (v != 0 && v != 1)
        return queue_unexpected(q, "record", err);
    if (all_final != NULL)
        *all_final = (int) v;
    return SY_OK;
}

void queue_msg_free(struct queue_msg_info *m)
{
    if (m == NULL)
        return;
    free(m->sender);
    free(m->listener);
    free(m->mta_qid);
    free(m->state);
    for (size_t i = 0; i < m->nrcpt; i++) {
        free(m->rcpts[i].addr);
        free(m->rcpts[i].last_reply);
        free(m->rcpts[i].transport);
        for (size_t k = 0; k < m->rcpts[i].nhist; k++) {
            struct queue_attempt_info *h = &m->rcpts[i].hist[k];

            free(h->state);
            free(h->transport);
            free(h->route);
            free(h->remote_host);
            free(h->remote_addr);
            free(h->tls);
            free(h->reply);
        }
        free(m->rcpts[i].hist);
    }
    free(m->rcpts);
    memset(m, 0, sizeof(*m));
}

/* queue_field_is - the field name of a hash reply equals name */
static int queue_field_is(const redisReply *f, const char *name)
{
    size_t n = strlen(name);

    return f->len == n && memcmp(f->str, name, n) == 0;
}

/* queue_set_str - replace *dst with a copy of a string reply */
static void queue_set_str(char **dst, const redisReply *v)
{
    free(*dst);
    *dst = xmemdup0(v->str, v->len);
}

/* queue_hash_ok - an HGETALL reply: an even array of strings */
static int queue_hash_ok(const redisReply *h)
{
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return 0;
    for (size_t i = 0; i < h->elements; i++)
        if (h->element[i]->type != REDIS_REPLY_STRING)
            return 0;
    return 1;
}

/* queue_show_msg - the message hash into m; a reason when malformed */
static const char *queue_show_msg(const redisReply *h, struct queue_msg_info *m, uint64_t *nrcpt)
{
    int have_nrcpt = 0;

    if (!queue_hash_ok(h))
        return "message record";
    for (size_t i = 0; i < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        uint64_t u;

        if (queue_field_is(f, "sender")) {
            queue_set_str(&m->sender, v);
        } else if (queue_field_is(f, "listener")) {
            queue_set_str(&m->listener, v);
        } else if (queue_field_is(f, "mta_qid")) {
            queue_set_str(&m->mta_qid, v);
        } else if (queue_field_is(f, "state")) {
            queue_set_str(&m->state, v);
        } else if (queue_field_is(f, "arrival_us")) {
            if (queue_parse_u64(v, INT64_MAX, &u) != 0)
                return "arrival_us";
            m->arrival_us = (int64_t) u;
        } else if (queue_field_is(f, "size")) {
            if (queue_parse_u64(v, UINT64_MAX, &u) != 0)
                return "size";
            m->size = u;
        } else if (queue_field_is(f, "nrcpt")) {
            if (queue_parse_u64(v, QUEUE_RCPT_MAX, nrcpt) != 0)
                return "nrcpt";
            have_nrcpt = 1;
        }
    }
    if (!have_nrcpt || m->sender == NULL)
        return "message record incomplete";
    return NULL;
}

/* queue_show_hist - one recipient's history list into ri */
static const char *queue_show_hist(const redisReply *l, struct queue_rcpt_info *ri)
{
    if (l->type != REDIS_REPLY_ARRAY || l->elements > (size_t) QUEUE_HIST_MAX * 4)
        return "history";
    ri->hist = xcalloc(l->elements + 1, sizeof(*ri->hist));
    for (size_t i = 0; i < l->elements; i++) {
        const redisReply *e = l->element[i];
        struct queue_attempt_info *h = &ri->hist[ri->nhist];
        const char *f[QUEUE_HIST_NFIELDS], *p, *end;
        size_t flen[QUEUE_HIST_NFIELDS], nf = 0;
        uint64_t u;

        if (e->type != REDIS_REPLY_STRING || e->len > QUEUE_HIST_ENTRY_MAX)
            return "history entry";
        p = e->str;
        end = e->str + e->len;
        while (nf < QUEUE_HIST_NFIELDS) {
            const char *tab = nf + 1 < QUEUE_HIST_NFIELDS ? memchr(p, '\t', (size_t) (end - p)) : NULL;

            f[nf] = p;
            flen[nf] = (size_t) ((tab != NULL ? tab : end) - p);
            nf++;
            if (tab == NULL)
                break;
            p = tab + 1;
        }
        if (nf != QUEUE_HIST_NFIELDS)
            return "history entry";
        if (text_parse_u64(f[0], flen[0], 0, INT64_MAX, &u) != SY_OK)
            return "history time";
        h->at_ms = (int64_t) u;
        if (text_parse_u64(f[1], flen[1], 0, INT64_MAX, &u) != SY_OK)
            return "history duration";
        h->duration_ms = (int64_t) u;
        ri->nhist++;
        h->state = xmemdup0(f[2], flen[2]);
        h->transport = xmemdup0(f[3], flen[3]);
        h->route = xmemdup0(f[4], flen[4]);
        h->remote_host = xmemdup0(f[5], flen[5]);
        h->remote_addr = xmemdup0(f[6], flen[6]);
        h->tls = xmemdup0(f[7], flen[7]);
        h->reply = xmemdup0(f[8], flen[8]);
    }
    return NULL;
}

/* queue_show_rcpt - one recipient hash and its schedule score */
static const char *queue_show_rcpt(const redisReply *h, const redisReply *score,
                                   struct queue_rcpt_info *ri)
{
    int state = -1;

    if (!queue_hash_ok(h) || h->elements == 0)
        return "recipient record missing";
    for (size_t i = 0; i < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        uint64_t u;

        if (queue_field_is(f, "addr")) {
            queue_set_str(&ri->addr, v);
        } else if (queue_field_is(f, "state")) {
            state = queue_state_parse(v->str, v->len);
            if (state < 0)
                return "recipient state";
        } else if (queue_field_is(f, "attempts")) {
            if (queue_parse_u64(v, UINT_MAX, &u) != 0)
                return "attempts";
            ri->attempts = (unsigned) u;
        } else if (queue_field_is(f, "last_reply")) {
            queue_set_str(&ri->last_reply, v);
        } else if (queue_field_is(f, "transport")) {
            queue_set_str(&ri->transport, v);
        }
    }
    if (ri->addr == NULL || state < 0)
        return "recipient record incomplete";
    ri->state = state;
    if (score->type == REDIS_REPLY_NIL)
        ri->next_ms = 0;
    else if (queue_parse_score(score, &ri->next_ms) != 0)
        return "schedule score";
    return NULL;
}

int queue_show(struct queue *q, const char *qid, struct queue_msg_info *m, struct sy_err *err)
{
    char msgkey[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX], rcptpfx[QUEUE_KEY_MAX];
    char histpfx[QUEUE_KEY_MAX];
    struct queue_args a;
    const char *why;
    redisReply *r;
    uint64_t nrcpt = 0;
    int rc;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    queue_key(q, msgkey, sizeof(msgkey), "msg:%s", qid);
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, rcptpfx, sizeof(rcptpfx), "rcpt:%s:", qid);
    queue_key(q, histpfx, sizeof(histpfx), "hist:%s:", qid);
    queue_script_args(&a);
    queue_args_str(&a, msgkey);
    queue_args_str(&a, sched);
    queue_args_str(&a, rcptpfx);
    queue_args_str(&a, qid);
    queue_args_i64(&a, (int64_t) QUEUE_RCPT_MAX);
    queue_args_str(&a, histpfx);
    rc = queue_script(q, QS_SHOW, queue_lua_show, &a, 2, &r, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return queue_unexpected(q, "show", err);
    }
    if (r->elements == 0) {
        freeReplyObject(r);
        return sy_err_set(err, SY_ENOTFOUND, "4.3.0", "queue: no such message %s", qid);
    }
    memcpy(m->qid, qid, QID_SIZE);
    why = queue_show_msg(r->element[0], m, &nrcpt);
    if (why == NULL && r->elements != 1 + 3 * nrcpt)
        why = "recipient count";
    if (why == NULL) {
        m->rcpts = xcalloc((size_t) nrcpt, sizeof(*m->rcpts));
        m->nrcpt = (size_t) nrcpt;
        for (size_t i = 0; i < m->nrcpt && why == NULL; i++) {
            why = queue_show_rcpt(r->element[1 + 3 * i], r->element[2 + 3 * i], &m->rcpts[i]);
            if (why == NULL)
                why = queue_show_hist(r->element[3 + 3 * i], &m->rcpts[i]);
        }
    }
    freeReplyObject(r);
    if (why != NULL) {
        /* Nothing half-filled goes back to the caller. */
        queue_msg_free(m);
        return sy_err_set(err, SY_ETEMP, "4.3.0", "redis: %s: malformed %s", qid, why);
    }
    return SY_OK;
}

int queue_list_ids(struct queue *q, const char *after, char (*out)[QID_SIZE],
                   size_t max, size_t *nout, struct sy_err *err)
{
    char index[QUEUE_KEY_MAX], excl[QID_SIZE + 1], count[QUEUE_NUM_SIZE];
    const char *argv[7] = { "ZRANGEBYLEX", index, "-", "+", "LIMIT", "0", count };
    redisReply *r;

    *nout = 0;
    if (after == NULL)
        after = "";
    if (after[0] != '\0' && queue_check_qid(after, err) != SY_OK)
        return SY_ESYNTAX;
    if (max == 0)
        return SY_OK;
    if (max > QUEUE_BATCH_MAX)
        max = QUEUE_BATCH_MAX;
    queue_key(q, index, sizeof(index), "index");
    if (after[0] != '\0') {
        /* "(" makes the bound exclusive: strictly after `after`. */
        excl[0] = '(';
        memcpy(excl + 1, after, QID_SIZE);
        argv[2] = excl;
    }
    (void) snprintf(count, sizeof(count), "%zu", max);
    if (queue_cmd_str(q, 7, argv, &r, err) != SY_OK)
        return SY_ETEMP;
    if (r->type != REDIS_REPLY_ARRAY || r->elements > max) {
        freeReplyObject(r);
        return queue_unexpected(q, "ZRANGEBYLEX", err);
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_STRING || e->len != QID_LEN) {
            freeReplyObject(r);
            return queue_unexpected(q, "ZRANGEBYLEX", err);
        }
        memcpy(out[i], e->str, QID_LEN);
        out[i][QID_LEN] = '\0';
        if (!qid_valid(out[i])) {
            char safe[QUEUE_PEER_TEXT_MAX];

            (void) sy_err_set(err, SY_ETEMP, "4.3.0", "redis: index holds a malformed id: %s",
                              log_safe_n(safe, sizeof(safe), e->str, e->len));
            freeReplyObject(r);
            return SY_ETEMP;
        }
    }
    *nout = r->elements;
    freeReplyObject(r);
    return SY_OK;
}
