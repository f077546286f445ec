/* queue_admin.c - hold rules in Redis, timed release, the administrator's queue commands
 *
 * Hold rules are shared by every node, so they live under their own hash
 * tag, "P:{hold}:" (rules, seq, gen), and are only ever touched by scripts
 * that name no node key (Redis Cluster refuses a script across slots).
 * What a rule does to a node's recipients happens in that node's slot:
 * the recipient's `held_by` field names the rule, and the held set's score
 * is the rule's end (unix seconds; 0 for a manual hold, +inf for a rule
 * without end), so the once-a-second sweep finds what is due with one
 * ZRANGEBYSCORE. A removed rule cannot reach other nodes' keys: `hold rm`
 * bumps P:{hold}:gen instead, and each node's sweep, seeing a gen it has
 * not checked (or a removal younger than QA_RM_SETTLE_MS, covering
 * intake's one-second rule cache), releases the recipients whose rule id
 * is gone.
 *
 * Every change to a node's keys is one idempotent script (the state each
 * step needs is checked first, so a repeat changes nothing); values travel
 * as separate length-counted arguments. Replies are hostile input: shapes,
 * lengths and numbers are checked, and a wrong shape closes the
 * connection (queue_unexpected).
 *
 * Thread safety: no state of its own; a struct queue belongs to one thread.
 */
#include "gateway/queue.h"

#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/queue_int.h"
#include "gateway/util/clock.h"
#include "gateway/util/log.h"
#include "gateway/util/text.h"
#include "gateway/util/xalloc.h"

/* Recipients per message read back (as queue.c). */
#define QA_RCPT_MAX ((size_t) 100000)
/* queue_admin_fetch stops after this many recipients per round trip: 11
 * reply elements each keeps a reply far below the connection layer's caps. */
#define QA_FETCH_RCPT_BUDGET ((size_t) 20000)
/* Recipients released per sweep script run. */
#define QA_SWEEP_MAX ((size_t) 1000)
/* Rule-held entries one ORPHAN run examines (Redis is busy for the run),
 * and the runs one sweep makes before leaving the rest (gen unchecked) to
 * the next sweep: 10,000,000 entries, far past any real backlog. */
#define QA_ORPHAN_MAX ((size_t) 1000)
#define QA_ORPHAN_RUNS_MAX ((size_t) 10000)
/* After a `hold rm`, nodes re-check their rule-held recipients for this
 * long: intake may still tag mail with a rule from its cache (at most 1 s
 * old) plus the time an insert and a tag take. */
#define QA_RM_SETTLE_MS ((int64_t) 10000)
/* Fields read per recipient by FETCH, plus its two scores. */
#define QA_FETCH_RFIELDS ((size_t) 9)
#define QA_FETCH_RSTRIDE (QA_FETCH_RFIELDS + 2)
#define QA_FETCH_MFIELDS ((size_t) 6)
/* Bounds on stored times release() trusts: 9999-12-31T23:59:59Z (unix s),
 * and a lease end at most a day (delivery.lease's maximum) ahead, in ms.
 * Strings: they are pasted into Lua. */
#define QA_HOLD_UNTIL_MAX "253402300799"
#define QA_LEASE_MAX_MS "86400000"
/* The reply a dropped recipient keeps (no DSN is sent). */
#define QA_DROP_REPLY "5.0.0 dropped by administrator"

/* release(): held -> queued. Due now, but never before the message's
 * FUTURERELEASE time, nor before the end of a lease still running (field
 * lease_ms, written by CLAIM, deleted by RECORD): a recipient held while a
 * worker was attempting it must not be claimed a second time while that
 * attempt runs. Both stored values are hostile: hold_until is clamped to
 * [0, QA_HOLD_UNTIL_MAX] s, and a lease end more than QA_LEASE_MAX_MS
 * ahead (delivery.lease is at most a day) counts as that. released_ms
 * lets the scheduler count expiry from the release (held mail does not
 * age). */
#define QA_LUA_RELEASE \
    "local function release(held, sched, k, m, mk, now)\n" \
    "  local t0 = tonumber(now)\n" \
    "  local t = t0\n" \
    "  local hu = tonumber(redis.call('HGET', mk, 'hold_until') or '0') or 0\n" \
    "  if hu ~= hu or hu < 0 then hu = 0 end\n" \
    "  if hu > " QA_HOLD_UNTIL_MAX " then hu = " QA_HOLD_UNTIL_MAX " end\n" \
    "  if hu * 1000 > t then t = hu * 1000 end\n" \
    "  local le = tonumber(redis.call('HGET', k, 'lease_ms') or '0') or 0\n" \
    "  if le ~= le then le = 0 end\n" \
    "  if le > t0 + " QA_LEASE_MAX_MS " then le = t0 + " QA_LEASE_MAX_MS " end\n" \
    "  if le > t then t = le end\n" \
    "  t = string.format('%.0f', t)\n" \
    "  redis.call('ZREM', held, m)\n" \
    "  redis.call('HSET', k, 'state', 'queued', 'next_ms', t, 'released_ms', now)\n" \
    "  redis.call('HDEL', k, 'held_by')\n" \
    "  redis.call('ZADD', sched, t, m)\n" \
    "end\n"

/* HOLD_ADD: KEYS rules seq; ARGV encoded rule, max rules. Returns {id,
 * 0} for a new rule, {id, 1} when the same rule (same text) exists
 * already, so a repeated add changes nothing; {-1, 0} when full. */
static const char qa_lua_hold_add[] =
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  if all[i + 1] == ARGV[1] then return {tonumber(all[i]) or 0, 1} end\n"
    "end\n"
    "if #all / 2 >= tonumber(ARGV[2]) then return {-1, 0} end\n"
    "local id = redis.call('INCR', KEYS[2])\n"
    "redis.call('HSET', KEYS[1], id, ARGV[1])\n"
    "return {id, 0}\n";

/* HOLD_RM: KEYS rules gen; ARGV id, now_ms. Returns 1 removed, 0 unknown.
 * gen becomes the removal time (strictly increasing). */
static const char qa_lua_hold_rm[] =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "local g = tonumber(redis.call('GET', KEYS[2]) or '0') or 0\n"
    "local t = tonumber(ARGV[2])\n"
    "if t <= g then t = g + 1 end\n"
    "redis.call('SET', KEYS[2], string.format('%.0f', t))\n"
    "return 1\n";

/* HOLD_LOAD (read-only): KEYS rules seq. Returns {seq, {id, rule, ...}}. */
static const char qa_lua_hold_load[] =
    "return {redis.call('GET', KEYS[2]) or '0', redis.call('HGETALL', KEYS[1])}\n";

/* TAG: KEYS held; ARGV rcpt-key-prefix ("P:{N}:rcpt:QID:"), qid, then
 * triples idx, rule id, held score. A recipient still held manually with
 * score 0 by the insert just made gets held_by and the rule's score.
 * Returns how many were tagged. */
static const char qa_lua_tag[] =
    "local n = 0\n"
    "for i = 3, #ARGV - 2, 3 do\n"
    "  local k = ARGV[1] .. ARGV[i]\n"
    "  local m = ARGV[2] .. ':' .. ARGV[i]\n"
    "  if redis.call('HGET', k, 'state') == 'held' and redis.call('HEXISTS', k, 'held_by') == 0\n"
    "     and redis.call('ZSCORE', KEYS[1], m) == '0' then\n"
    "    redis.call('HSET', k, 'held_by', ARGV[i + 1])\n"
    "    redis.call('ZADD', KEYS[1], ARGV[i + 2], m)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

/* SWEEP: KEYS held sched holdgen; ARGV now_s, now_ms, max, rcpt-key-base,
 * msg-key-base. Releases rule-held recipients whose rule ended at or
 * before now_s. Returns {released, the node's checked gen or ""}. */
static const char qa_lua_sweep[] =
    QA_LUA_RELEASE
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))\n"
    "local n = 0\n"
    "for _, m in ipairs(due) do\n"
    "  local qid = string.match(m, '^(.+):%d+$')\n"
    "  local k = ARGV[4] .. m\n"
    "  if qid and redis.call('HGET', k, 'state') == 'held' then\n"
    "    if redis.call('HEXISTS', k, 'held_by') == 1 then\n"
    "      release(KEYS[1], KEYS[2], k, m, ARGV[5] .. qid, ARGV[2])\n"
    "      n = n + 1\n"
    "    else\n"
    "      redis.call('ZADD', KEYS[1], 0, m)\n"
    "    end\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], m)\n"
    "  end\n"
    "end\n"
    "return {n, redis.call('GET', KEYS[3]) or ''}\n";

/* ORPHAN: KEYS held sched holdgen; ARGV now_ms, rcpt-key-base,
 * msg-key-base, gen, seq, max, cursor member ("" to start), cursor score,
 * then the ids of every existing rule. One bounded run: examines at most
 * max rule-held entries of `held` (ZRANGE by rank: O(log n + max)),
 * starting after the cursor, and releases those whose rule (an id <= seq,
 * so fully added when the ids were read) no longer exists. The cursor is
 * the last entry examined that is still in `held` (a released one leaves
 * it, so the ranks after the cursor close up); when it is gone or its
 * score changed, the run restarts at the first entry with its score
 * (re-examining is harmless). A run that reaches the end records gen as
 * checked. Returns {released, 1 when the end was reached, cursor member,
 * cursor score}. */
static const char qa_lua_orphan[] =
    QA_LUA_RELEASE
    "local keep = {}\n"
    "for i = 9, #ARGV do keep[ARGV[i]] = true end\n"
    "local seq = tonumber(ARGV[5]) or 0\n"
    "local max = tonumber(ARGV[6])\n"
    "local cm, cs = ARGV[7], ARGV[8]\n"
    "local base = redis.call('ZCOUNT', KEYS[1], '-inf', 0)\n"
    "local start = base\n"
    "if cm ~= '' then\n"
    "  local sc = redis.call('ZSCORE', KEYS[1], cm)\n"
    "  if sc and sc == cs then start = redis.call('ZRANK', KEYS[1], cm) + 1\n"
    "  else start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. cs) end\n"
    "  if start < base then start = base end\n"
    "end\n"
    "local batch = redis.call('ZRANGE', KEYS[1], start, start + max - 1, 'WITHSCORES')\n"
    "local n = 0\n"
    "for i = 1, #batch - 1, 2 do\n"
    "  local m = batch[i]\n"
    "  local qid = string.match(m, '^(.+):%d+$')\n"
    "  local k = ARGV[2] .. m\n"
    "  local hb = redis.call('HGET', k, 'held_by')\n"
    "  if qid and hb and not keep[hb] and (tonumber(hb) or 0) <= seq\n"
    "     and redis.call('HGET', k, 'state') == 'held' then\n"
    "    release(KEYS[1], KEYS[2], k, m, ARGV[3] .. qid, ARGV[1])\n"
    "    n = n + 1\n"
    "  else\n"
    "    cm, cs = m, batch[i + 1]\n"
    "  end\n"
    "end\n"
    "if #batch < 2 * max then\n"
    "  redis.call('SET', KEYS[3], ARGV[4])\n"
    "  return {n, 1, '', ''}\n"
    "end\n"
    "return {n, 0, cm, cs}\n";

/* ADMIN: KEYS sched held index done; ARGV op, now_ms, arg (transport,
 * rule id or drop reply), rule score, msg-key-base, rcpt-key-base, then
 * members "QID:IDX". Returns {changed, qid-that-became-done, ...}. A
 * recipient is leased (a worker is attempting it) while its schedule score
 * differs from its next_ms field (CLAIM moves only the score) or its
 * lease_ms is still ahead (a release from a hold scheduled it at the
 * lease end, so score and next_ms agree): kick and
 * the "due now" of fail/reroute leave a leased recipient alone, since a
 * second claim would deliver it twice. */
static const char qa_lua_admin[] =
    QA_LUA_RELEASE
    "local op, now = ARGV[1], ARGV[2]\n"
    "local changed, done, seen = 0, {}, {}\n"
    "local function leased(k, m)\n"
    "  local sc = redis.call('ZSCORE', KEYS[1], m)\n"
    "  local nx = redis.call('HGET', k, 'next_ms')\n"
    "  local le = tonumber(redis.call('HGET', k, 'lease_ms') or '0') or 0\n"
    "  return not sc or not nx or tonumber(sc) ~= tonumber(nx) or le > tonumber(now)\n"
    "end\n"
    "local function due(k, m)\n"
    "  redis.call('ZADD', KEYS[1], 'XX', now, m)\n"
    "  redis.call('HSET', k, 'next_ms', now)\n"
    "end\n"
    "local function isdone(qid)\n"
    "  if not seen[qid] then seen[qid] = true; done[#done + 1] = qid end\n"
    "end\n"
    "for i = 7, #ARGV do\n"
    "  local m = ARGV[i]\n"
    "  local qid = string.match(m, '^(.+):%d+$')\n"
    "  local k = ARGV[6] .. m\n"
    "  local mk = qid and (ARGV[5] .. qid)\n"
    "  local st = qid and redis.call('EXISTS', mk) == 1 and redis.call('HGET', k, 'state')\n"
    "  local hit = false\n"
    "  if not st then\n"
    "  elseif op == 'hold' or op == 'rulehold' then\n"
    "    if st == 'queued' then\n"
    "      redis.call('ZREM', KEYS[1], m)\n"
    "      redis.call('HSET', k, 'state', 'held')\n"
    "      if op == 'hold' then\n"
    "        redis.call('HDEL', k, 'held_by')\n"
    "        redis.call('ZADD', KEYS[2], 0, m)\n"
    "      else\n"
    "        redis.call('HSET', k, 'held_by', ARGV[3])\n"
    "        redis.call('ZADD', KEYS[2], ARGV[4], m)\n"
    "      end\n"
    "      hit = true\n"
    "    elseif st == 'held' and op == 'hold' and redis.call('HEXISTS', k, 'held_by') == 1 then\n"
    "      redis.call('HDEL', k, 'held_by')\n"
    "      redis.call('ZADD', KEYS[2], 0, m)\n"
    "      hit = true\n"
    "    end\n"
    "  elseif op == 'release' then\n"
    "    if st == 'held' then release(KEYS[2], KEYS[1], k, m, mk, now); hit = true end\n"
    "  elseif op == 'kick' then\n"
    "    if st == 'queued' and not leased(k, m) then due(k, m); hit = true end\n"
    "  elseif op == 'fail' or op == 'drop' or op == 'reroute' then\n"
    "    if st == 'queued' or st == 'held' then\n"
    "      if op == 'reroute' then redis.call('HSET', k, 'reroute', ARGV[3])\n"
    "      else redis.call('HSET', k, 'admin', op) end\n"
    "      if st == 'held' then\n"
    "        if op ~= 'reroute' then release(KEYS[2], KEYS[1], k, m, mk, now) end\n"
    "      elseif not leased(k, m) then due(k, m) end\n"
    "      hit = true\n"
    "    end\n"
    "  elseif op == 'dropnow' then\n"
    "    if st == 'queued' or st == 'held' then\n"
    "      redis.call('ZREM', KEYS[1], m)\n"
    "      redis.call('ZREM', KEYS[2], m)\n"
    "      redis.call('HSET', k, 'state', 'failed', 'admin', 'drop', 'last_reply', ARGV[3], 'last_ms', now)\n"
    "      redis.call('HDEL', k, 'next_ms', 'held_by')\n"
    "      hit = true\n"
    "      local nf = redis.call('HINCRBY', mk, 'nfinal', 1)\n"
    "      local nr = tonumber(redis.call('HGET', mk, 'nrcpt'))\n"
    "      if nr and nf >= nr then\n"
    "        redis.call('HSET', mk, 'state', 'done')\n"
    "        redis.call('ZREM', KEYS[3], qid)\n"
    "        redis.call('ZADD', KEYS[4], 'NX', now, qid)\n"
    "        isdone(qid)\n"
    "      end\n"
    "    elseif st == 'failed' and redis.call('HGET', mk, 'state') == 'done' then\n"
    "      isdone(qid)\n"
    "    end\n"
    "  end\n"
    "  if hit then changed = changed + 1 end\n"
    "end\n"
    "local out = {changed}\n"
    "for _, d in ipairs(done) do out[#out + 1] = d end\n"
    "return out\n";

/* FETCH (read-only): KEYS sched held; ARGV msg-key-base, rcpt-key-base,
 * recipient budget, max nrcpt, then ids. Returns {ids consumed, then per
 * known message: qid, 6 message fields, and per recipient 9 fields and 2
 * scores ("" for absent)}. Stops before a message that would pass the
 * budget, unless it is the first. */
static const char qa_lua_fetch[] =
    "local out = {0}\n"
    "local used = 0\n"
    "for i = 5, #ARGV do\n"
    "  local id = ARGV[i]\n"
    "  local m = redis.call('HMGET', ARGV[1] .. id, 'sender', 'arrival_us', 'size', 'nrcpt', 'listener', 'state')\n"
    "  local n = tonumber(m[4])\n"
    "  if m[1] and n then\n"
    "    if n > tonumber(ARGV[4]) or n < 0 then return redis.error_reply('ERR nrcpt out of range') end\n"
    "    if used > 0 and used + n > tonumber(ARGV[3]) then break end\n"
    "    used = used + n\n"
    "    out[#out + 1] = id\n"
    "    for j = 1, 6 do out[#out + 1] = m[j] or '' end\n"
    "    for r = 0, n - 1 do\n"
    "      local mem = id .. ':' .. r\n"
    "      local f = redis.call('HMGET', ARGV[2] .. mem, 'addr', 'state', 'attempts', 'transport',\n"
    "                           'last_reply', 'held_by', 'admin', 'reroute', 'released_ms')\n"
    "      for j = 1, 9 do out[#out + 1] = f[j] or '' end\n"
    "      out[#out + 1] = redis.call('ZSCORE', KEYS[1], mem) or ''\n"
    "      out[#out + 1] = redis.call('ZSCORE', KEYS[2], mem) or ''\n"
    "    end\n"
    "  end\n"
    "  out[1] = i - 4\n"
    "end\n"
    "return out\n";

/* qa_gkey - a key of the shared hold-rule state: "P:{hold}:" + suffix.
 * The pool's base is "P:{N}:" and P never holds '{' (queue_get refuses
 * it), so P is everything before the first ":{". */
static const char *qa_gkey(const struct queue *q, char *dst, size_t size, const char *suffix)
{
    char base[QUEUE_KEY_MAX];
    const char *brace;
    int n;

    queue_key(q, base, sizeof(base), "%s", "");
    brace = strstr(base, ":{");
    if (brace == NULL)
        sy_panic("queue: key base without hash tag");
    n = snprintf(dst, size, "%.*s:{hold}:%s", (int) (brace - base), base, suffix);
    if (n < 0 || (size_t) n >= size)
        sy_panic("queue: key too long");
    return dst;
}

/* qa_int - an integer reply in [lo, hi]; -1 when not */
static int qa_int(const redisReply *r, long long lo, long long hi, long long *out)
{
    if (r->type != REDIS_REPLY_INTEGER || r->integer < lo || r->integer > hi)
        return -1;
    *out = r->integer;
    return 0;
}

/* qa_member - "QID:IDX" into dst (QID_SIZE + QUEUE_NUM_SIZE bytes) */
static const char *qa_member(char *dst, size_t size, const char *qid, unsigned idx)
{
    (void) snprintf(dst, size, "%s:%u", qid, idx);
    return dst;
}

int queue_hold_rule_add(struct queue *q, const struct hold_rule *r, uint64_t *id,
                        int *existed, struct sy_err *err)
{
    char rules[QUEUE_KEY_MAX], seq[QUEUE_KEY_MAX], enc[HOLD_ENCODED_MAX + 1];
    struct queue_args a;
    redisReply *rep;
    size_t elen;
    long long v, ex;
    int rc;

    *id = 0;
    if (existed != NULL)
        *existed = 0;
    if (hold_rule_encode(r, enc, sizeof(enc), &elen) != SY_OK)
        return sy_err_set(err, SY_ESYNTAX, "5.5.4", "hold rule cannot be encoded");
    qa_gkey(q, rules, sizeof(rules), "rules");
    qa_gkey(q, seq, sizeof(seq), "seq");
    queue_script_args(&a);
    queue_args_str(&a, rules);
    queue_args_str(&a, seq);
    queue_args_mem(&a, enc, elen);
    queue_args_i64(&a, (int64_t) QUEUE_HOLD_RULES_MAX);
    rc = queue_script(q, QS_HOLD_ADD, qa_lua_hold_add, &a, 2, &rep, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        qa_int(rep->element[0], -1, INT64_MAX, &v) != 0 || v == 0 ||
        qa_int(rep->element[1], 0, 1, &ex) != 0) {
        freeReplyObject(rep);
        return queue_unexpected(q, "hold add", err);
    }
    freeReplyObject(rep);
    if (existed != NULL)
        *existed = (int) ex;
    if (v < 0)
        return sy_err_set(err, SY_ETOOBIG, "5.3.4", "there are already %zu hold rules (the most allowed)",
                          QUEUE_HOLD_RULES_MAX);
    *id = (uint64_t) v;
    return SY_OK;
}

int queue_hold_rule_rm(struct queue *q, uint64_t id, int64_t now_ms, struct sy_err *err)
{
    char rules[QUEUE_KEY_MAX], gen[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *rep;
    long long v;
    int rc;

    if (id == 0 || id > INT64_MAX)
        return sy_err_set(err, SY_ENOTFOUND, "5.5.4", "no hold rule %llu", (unsigned long long) id);
    qa_gkey(q, rules, sizeof(rules), "rules");
    qa_gkey(q, gen, sizeof(gen), "gen");
    queue_script_args(&a);
    queue_args_str(&a, rules);
    queue_args_str(&a, gen);
    queue_args_i64(&a, (int64_t) id);
    queue_args_i64(&a, now_ms);
    rc = queue_script(q, QS_HOLD_RM, qa_lua_hold_rm, &a, 2, &rep, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (qa_int(rep, 0, 1, &v) != 0) {
        freeReplyObject(rep);
        return queue_unexpected(q, "hold rm", err);
    }
    freeReplyObject(rep);
    if (v == 0)
        return sy_err_set(err, SY_ENOTFOUND, "5.5.4", "no hold rule %llu", (unsigned long long) id);
    return SY_OK;
}

void queue_hold_set_free(struct queue_hold_set *s)
{
    if (s == NULL)
        return;
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* qa_rule_cmp - qsort by id */
static int qa_rule_cmp(const void *a, const void *b)
{
    const struct queue_hold_rule *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

int queue_hold_rules_load(struct queue *q, struct queue_hold_set *s, struct sy_err *err)
{
    char rules[QUEUE_KEY_MAX], seq[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *rep;
    const redisReply *h;
    uint64_t u;
    int rc;

    memset(s, 0, sizeof(*s));
    qa_gkey(q, rules, sizeof(rules), "rules");
    qa_gkey(q, seq, sizeof(seq), "seq");
    queue_script_args(&a);
    queue_args_str(&a, rules);
    queue_args_str(&a, seq);
    rc = queue_script(q, QS_HOLD_LOAD, qa_lua_hold_load, &a, 2, &rep, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        queue_parse_u64(rep->element[0], INT64_MAX, &u) != 0 ||
        rep->element[1]->type != REDIS_REPLY_ARRAY || rep->element[1]->elements % 2 != 0) {
        freeReplyObject(rep);
        return queue_unexpected(q, "hold rules", err);
    }
    h = rep->element[1];
    if (h->elements / 2 > QUEUE_HOLD_RULES_MAX * 4) {
        freeReplyObject(rep);
        return sy_err_set(err, SY_ETEMP, "4.3.0", "redis: %zu hold rules stored (far more than %zu)",
                          h->elements / 2, QUEUE_HOLD_RULES_MAX);
    }
    s->seq = u;
    s->v = xcalloc(h->elements / 2 + 1, sizeof(*s->v));
    for (size_t i = 0; i < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        struct queue_hold_rule *r = &s->v[s->n];
        struct sy_err e;

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            queue_hold_set_free(s);
            freeReplyObject(rep);
            return queue_unexpected(q, "hold rules", err);
        }
        if (queue_parse_u64(k, INT64_MAX, &r->id) != 0 || r->id == 0) {
            char safe[QUEUE_PEER_TEXT_MAX];

            log_warn(NULL, "hold rule with a malformed id ignored: %s",
                     log_safe_n(safe, sizeof(safe), k->str, k->len));
            continue;
        }
        if (hold_rule_decode(v->str, v->len, &r->rule, &e) != SY_OK) {
            /* Still counted as existing (ORPHAN must not release its
             * recipients because we cannot read it): kept as a rule that
             * matches nothing. */
            log_warn(NULL, "hold rule %llu cannot be read, ignored: %s",
                     (unsigned long long) r->id, e.text);
            hold_rule_init(&r->rule);
            r->rule.until = 1;
        }
        s->n++;
    }
    freeReplyObject(rep);
    qsort(s->v, s->n, sizeof(*s->v), qa_rule_cmp);
    return SY_OK;
}

int queue_hold_tag(struct queue *q, const char *qid, const struct queue_hold_tag *t, size_t n,
                   struct sy_err *err)
{
    char held[QUEUE_KEY_MAX], rcptpfx[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *rep;
    long long v;
    int rc;

    if (queue_check_qid(qid, err) != SY_OK)
        return SY_ESYNTAX;
    if (n == 0)
        return SY_OK;
    if (n > QA_RCPT_MAX)
        return sy_err_set(err, SY_ETOOBIG, "4.5.3", "queue: tag %s: too many recipients", qid);
    queue_key(q, held, sizeof(held), "held");
    queue_key(q, rcptpfx, sizeof(rcptpfx), "rcpt:%s:", qid);
    queue_script_args(&a);
    queue_args_str(&a, held);
    queue_args_str(&a, rcptpfx);
    queue_args_str(&a, qid);
    for (size_t i = 0; i < n; i++) {
        if (t[i].rule == 0 || t[i].rule > INT64_MAX || t[i].idx >= QA_RCPT_MAX || t[i].until < 0) {
            queue_args_free(&a);
            return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: tag %s: bad tag", qid);
        }
        queue_args_i64(&a, t[i].idx);
        queue_args_i64(&a, (int64_t) t[i].rule);
        if (t[i].until > 0)
            queue_args_i64(&a, t[i].until);
        else
            queue_args_str(&a, "+inf");
    }
    rc = queue_script(q, QS_TAG_HELD, qa_lua_tag, &a, 1, &rep, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (qa_int(rep, 0, (long long) n, &v) != 0) {
        freeReplyObject(rep);
        return queue_unexpected(q, "hold tag", err);
    }
    freeReplyObject(rep);
    return SY_OK;
}

int queue_hold_orphan_batch(struct queue *q, const char *gen, size_t max,
                            struct queue_orphan_cursor *cur, size_t *nreleased, int *done,
                            struct sy_err *err)
{
    char held[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX], hgen[QUEUE_KEY_MAX];
    char rcptbase[QUEUE_KEY_MAX], msgbase[QUEUE_KEY_MAX];
    char (*ids)[QUEUE_NUM_SIZE];
    struct queue_hold_set s;
    struct queue_args a;
    redisReply *rep;
    const redisReply *m, *sc;
    long long v, d;
    int rc;

    *nreleased = 0;
    *done = 0;
    if (max == 0 || max > (size_t) 100000)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: hold orphans: bad batch size");
    if (queue_hold_rules_load(q, &s, err) != SY_OK)
        return SY_ETEMP;
    queue_key(q, held, sizeof(held), "held");
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, hgen, sizeof(hgen), "holdgen");
    queue_key(q, rcptbase, sizeof(rcptbase), "rcpt:");
    queue_key(q, msgbase, sizeof(msgbase), "msg:");
    ids = xcalloc(s.n + 1, sizeof(*ids));
    queue_script_args(&a);
    queue_args_str(&a, held);
    queue_args_str(&a, sched);
    queue_args_str(&a, hgen);
    queue_args_i64(&a, clock_real_ms());
    queue_args_str(&a, rcptbase);
    queue_args_str(&a, msgbase);
    queue_args_str(&a, gen);
    queue_args_i64(&a, (int64_t) s.seq);
    queue_args_i64(&a, (int64_t) max);
    queue_args_str(&a, cur->member);
    queue_args_str(&a, cur->member[0] != '\0' ? cur->score : "0");
    for (size_t i = 0; i < s.n; i++) {
        (void) snprintf(ids[i], sizeof(ids[i]), "%llu", (unsigned long long) s.v[i].id);
        queue_args_str(&a, ids[i]);
    }
    rc = queue_script(q, QS_ORPHAN, qa_lua_orphan, &a, 3, &rep, err);
    queue_args_free(&a);
    free(ids);
    queue_hold_set_free(&s);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        qa_int(rep->element[0], 0, (long long) max, &v) != 0 ||
        qa_int(rep->element[1], 0, 1, &d) != 0) {
        freeReplyObject(rep);
        return queue_unexpected(q, "hold orphans", err);
    }
    m = rep->element[2];
    sc = rep->element[3];
    if (m->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING ||
        m->len >= sizeof(cur->member) || sc->len >= sizeof(cur->score) ||
        memchr(m->str, '\0', m->len) != NULL || memchr(sc->str, '\0', sc->len) != NULL ||
        (m->len > 0 && sc->len == 0)) {
        freeReplyObject(rep);
        return queue_unexpected(q, "hold orphans", err);
    }
    memcpy(cur->member, m->str, m->len);
    cur->member[m->len] = '\0';
    memcpy(cur->score, sc->str, sc->len);
    cur->score[sc->len] = '\0';
    freeReplyObject(rep);
    *nreleased = (size_t) v;
    *done = (int) d;
    return SY_OK;
}

/* qa_orphans - release this node's recipients held by removed rules: one
 * bounded ORPHAN run after another until one reaches the end of `held`
 * (which records gen as checked). An error or the run cap leaves gen
 * unchecked, so the next sweep starts over; every run is atomic and
 * idempotent on its own. */
static int qa_orphans(struct queue *q, const char *gen, size_t *nreleased, struct sy_err *err)
{
    struct queue_orphan_cursor cur;
    size_t n;
    int done = 0;

    memset(&cur, 0, sizeof(cur));
    for (size_t runs = 0; !done && runs < QA_ORPHAN_RUNS_MAX; runs++) {
        if (queue_hold_orphan_batch(q, gen, QA_ORPHAN_MAX, &cur, &n, &done, err) != SY_OK)
            return SY_ETEMP;
        *nreleased += n;
    }
    return SY_OK;
}

int queue_hold_sweep(struct queue *q, int64_t now_s, size_t *nreleased, struct sy_err *err)
{
    char held[QUEUE_KEY_MAX], sched[QUEUE_KEY_MAX], hgen[QUEUE_KEY_MAX];
    char rcptbase[QUEUE_KEY_MAX], msgbase[QUEUE_KEY_MAX], gkey[QUEUE_KEY_MAX];
    char gen[QUEUE_NUM_SIZE] = "0", checked[QUEUE_NUM_SIZE] = "";
    const char *argv[2] = { "GET", gkey };
    struct queue_args a;
    redisReply *rep;
    long long v;
    uint64_t g = 0;
    int64_t now_ms = clock_real_ms();
    int rc;

    *nreleased = 0;
    if (now_s < 0)
        return sy_err_set(err, SY_ESYNTAX, "4.3.0", "queue: hold sweep: bad time");
    queue_key(q, held, sizeof(held), "held");
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, hgen, sizeof(hgen), "holdgen");
    queue_key(q, rcptbase, sizeof(rcptbase), "rcpt:");
    queue_key(q, msgbase, sizeof(msgbase), "msg:");
    queue_script_args(&a);
    queue_args_str(&a, held);
    queue_args_str(&a, sched);
    queue_args_str(&a, hgen);
    queue_args_i64(&a, now_s);
    queue_args_i64(&a, now_ms);
    queue_args_i64(&a, (int64_t) QA_SWEEP_MAX);
    queue_args_str(&a, rcptbase);
    queue_args_str(&a, msgbase);
    rc = queue_script(q, QS_SWEEP, qa_lua_sweep, &a, 3, &rep, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        qa_int(rep->element[0], 0, (long long) QA_SWEEP_MAX, &v) != 0 ||
        rep->element[1]->type != REDIS_REPLY_STRING || rep->element[1]->len >= sizeof(checked)) {
        freeReplyObject(rep);
        return queue_unexpected(q, "hold sweep", err);
    }
    *nreleased = (size_t) v;
    memcpy(checked, rep->element[1]->str, rep->element[1]->len);
    checked[rep->element[1]->len] = '\0';
    freeReplyObject(rep);

    /* Removed rules: the shared gen names the last removal (unix ms). */
    qa_gkey(q, gkey, sizeof(gkey), "gen");
    if (queue_cmd_str(q, 2, argv, &rep, err) != SY_OK)
        return SY_ETEMP;
    if (rep->type == REDIS_REPLY_STRING) {
        if (queue_parse_u64(rep, INT64_MAX, &g) != 0) {
            freeReplyObject(rep);
            return queue_unexpected(q, "hold gen", err);
        }
        (void) snprintf(gen, sizeof(gen), "%llu", (unsigned long long) g);
    } else if (rep->type != REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        return queue_unexpected(q, "hold gen", err);
    }
    freeReplyObject(rep);
    if (g == 0)
        return SY_OK;   /* no rule was ever removed */
    if (strcmp(gen, checked) == 0 && now_ms - (int64_t) g >= QA_RM_SETTLE_MS)
        return SY_OK;
    return qa_orphans(q, gen, nreleased, err);
}

static const char *const qa_op_names[] = {
    [QUEUE_OP_HOLD] = "hold", [QUEUE_OP_RELEASE] = "release", [QUEUE_OP_KICK] = "kick",
    [QUEUE_OP_DROP] = "drop", [QUEUE_OP_FAIL] = "fail", [QUEUE_OP_REROUTE] = "reroute",
    [QUEUE_OP_RULE_HOLD] = "rulehold", [QUEUE_OP_DROP_NOW] = "dropnow",
};

int queue_admin_apply(struct queue *q, const struct queue_op_req *req,
                      const struct queue_target *t, size_t n, size_t *nchanged,
                      char (*done)[QID_SIZE], size_t *ndone, struct sy_err *err)
{
    char sched[QUEUE_KEY_MAX], held[QUEUE_KEY_MAX], index[QUEUE_KEY_MAX], donek[QUEUE_KEY_MAX];
    char msgbase[QUEUE_KEY_MAX], rcptbase[QUEUE_KEY_MAX];
    char (*members)[QID_SIZE + QUEUE_NUM_SIZE];
    struct queue_args a;
    redisReply *rep;
    long long v;
    size_t nd = 0;
    int rc;

    *nchanged = 0;
    if (ndone != NULL)
        *ndone = 0;
    if (req == NULL || req->op < QUEUE_OP_HOLD || req->op > QUEUE_OP_DROP_NOW || req->now_ms < 0)
        return sy_err_set(err, SY_ESYNTAX, "5.5.4", "queue: bad operation");
    if (req->op == QUEUE_OP_REROUTE && !rules_name_ok(req->transport))
        return sy_err_set(err, SY_ESYNTAX, "5.5.4", "queue: reroute needs a transport name");
    if (req->op == QUEUE_OP_RULE_HOLD &&
        (req->rule == 0 || req->rule > INT64_MAX || req->rule_until < 0))
        return sy_err_set(err, SY_ESYNTAX, "5.5.4", "queue: bad hold rule");
    if (n == 0)
        return SY_OK;
    if (n > QUEUE_OP_BATCH_MAX)
        return sy_err_set(err, SY_ETOOBIG, "5.5.4", "queue: at most %zu recipients per call",
                          QUEUE_OP_BATCH_MAX);
    for (size_t i = 0; i < n; i++)
        if (queue_check_qid(t[i].qid, err) != SY_OK || t[i].idx >= QA_RCPT_MAX)
            return sy_err_set(err, SY_ESYNTAX, "5.5.4", "queue: bad recipient id");
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, held, sizeof(held), "held");
    queue_key(q, index, sizeof(index), "index");
    queue_key(q, donek, sizeof(donek), "done");
    queue_key(q, msgbase, sizeof(msgbase), "msg:");
    queue_key(q, rcptbase, sizeof(rcptbase), "rcpt:");
    members = xcalloc(n, sizeof(*members));
    queue_script_args(&a);
    queue_args_str(&a, sched);
    queue_args_str(&a, held);
    queue_args_str(&a, index);
    queue_args_str(&a, donek);
    queue_args_str(&a, qa_op_names[req->op]);
    queue_args_i64(&a, req->now_ms);
    if (req->op == QUEUE_OP_REROUTE)
        queue_args_str(&a, req->transport);
    else if (req->op == QUEUE_OP_RULE_HOLD)
        queue_args_i64(&a, (int64_t) req->rule);
    else
        queue_args_str(&a, QA_DROP_REPLY);
    if (req->op == QUEUE_OP_RULE_HOLD && req->rule_until == 0)
        queue_args_str(&a, "+inf");
    else
        queue_args_i64(&a, req->op == QUEUE_OP_RULE_HOLD ? req->rule_until : 0);
    queue_args_str(&a, msgbase);
    queue_args_str(&a, rcptbase);
    for (size_t i = 0; i < n; i++)
        queue_args_str(&a, qa_member(members[i], sizeof(members[i]), t[i].qid, t[i].idx));
    rc = queue_script(q, QS_ADMIN, qa_lua_admin, &a, 4, &rep, err);
    queue_args_free(&a);
    free(members);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->elements > n + 1 ||
        qa_int(rep->element[0], 0, (long long) n, &v) != 0) {
        freeReplyObject(rep);
        return queue_unexpected(q, "queue admin", err);
    }
    for (size_t i = 1; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];

        if (e->type != REDIS_REPLY_STRING || e->len != QID_LEN) {
            freeReplyObject(rep);
            return queue_unexpected(q, "queue admin", err);
        }
        if (done == NULL)
            continue;
        memcpy(done[nd], e->str, QID_LEN);
        done[nd][QID_LEN] = '\0';
        if (qid_valid(done[nd]))
            nd++;
    }
    freeReplyObject(rep);
    *nchanged = (size_t) v;
    if (ndone != NULL)
        *ndone = nd;
    return SY_OK;
}

void queue_admin_msg_free(struct queue_admin_msg *m)
{
    if (m == NULL)
        return;
    free(m->sender);
    free(m->listener);
    free(m->state);
    for (size_t i = 0; i < m->nrcpt; i++) {
        struct queue_admin_rcpt *r = &m->rcpts[i];

        free(r->addr);
        free(r->transport);
        free(r->last_reply);
        free(r->admin);
        free(r->reroute);
    }
    free(m->rcpts);
    memset(m, 0, sizeof(*m));
}

/* qa_str - a string reply: NULL when "" (absent), else a copy */
static char *qa_str(const redisReply *r)
{
    return r->len == 0 ? NULL : xmemdup0(r->str, r->len);
}

/* qa_u64 - "" is 0; else a decimal in [0, max]; -1 when malformed */
static int qa_u64(const redisReply *r, uint64_t max, uint64_t *out)
{
    *out = 0;
    return r->len == 0 ? 0 : queue_parse_u64(r, max, out);
}

/* qa_score - "" is dflt; "inf" is INT64_MAX; else a finite score */
static int qa_score(const redisReply *r, int64_t dflt, int64_t *out)
{
    if (r->len == 0) {
        *out = dflt;
        return 0;
    }
    if (text_ieq(r->str, r->len, "inf") || text_ieq(r->str, r->len, "+inf")) {
        *out = INT64_MAX;
        return 0;
    }
    return queue_parse_score(r, out);
}

/* qa_fetch_rcpt - 11 reply strings into one recipient; a reason when malformed */
static const char *qa_fetch_rcpt(redisReply *const *f, struct queue_admin_rcpt *r)
{
    uint64_t u;
    int st;

    if (f[0]->len == 0)
        return "recipient record missing";
    r->addr = xmemdup0(f[0]->str, f[0]->len);
    st = -1;
    for (int s = QUEUE_QUEUED; s <= QUEUE_MISSING; s++)
        if (strlen(queue_state_name(s)) == f[1]->len &&
            memcmp(queue_state_name(s), f[1]->str, f[1]->len) == 0)
            st = s;
    if (st < 0)
        return "recipient state";
    r->state = st;
    if (qa_u64(f[2], UINT_MAX, &u) != 0)
        return "attempts";
    r->attempts = (unsigned) u;
    r->transport = qa_str(f[3]);
    r->last_reply = qa_str(f[4]);
    if (qa_u64(f[5], INT64_MAX, &r->held_by) != 0)
        return "held_by";
    r->admin = qa_str(f[6]);
    r->reroute = qa_str(f[7]);
    if (qa_u64(f[8], INT64_MAX, &u) != 0)
        return "released_ms";
    r->released_ms = (int64_t) u;
    if (qa_score(f[9], 0, &r->sched_ms) != 0)
        return "schedule score";
    if (qa_score(f[10], -1, &r->held_score) != 0)
        return "held score";
    return NULL;
}

/* qa_fetch_msg - one message of a FETCH reply at *pos into m */
static const char *qa_fetch_msg(const redisReply *rep, size_t *pos, struct queue_admin_msg *m)
{
    redisReply *const *e = rep->element;
    size_t p = *pos;
    uint64_t u, nrcpt;
    const char *why = NULL;

    if (rep->elements - p < 1 + QA_FETCH_MFIELDS || e[p]->len != QID_LEN)
        return "message entry";
    memcpy(m->qid, e[p]->str, QID_LEN);
    m->qid[QID_LEN] = '\0';
    if (!qid_valid(m->qid))
        return "queue id";
    p++;
    m->sender = xmemdup0(e[p]->str, e[p]->len);
    if (qa_u64(e[p + 1], INT64_MAX, &u) != 0)
        return "arrival_us";
    m->arrival_us = (int64_t) u;
    if (qa_u64(e[p + 2], UINT64_MAX, &m->size) != 0)
        return "size";
    if (queue_parse_u64(e[p + 3], QA_RCPT_MAX, &nrcpt) != 0)
        return "nrcpt";
    m->listener = qa_str(e[p + 4]);
    m->state = qa_str(e[p + 5]);
    p += QA_FETCH_MFIELDS;
    if ((rep->elements - p) / QA_FETCH_RSTRIDE < nrcpt)
        return "recipient count";
    m->rcpts = xcalloc((size_t) nrcpt + 1, sizeof(*m->rcpts));
    for (size_t i = 0; i < nrcpt && why == NULL; i++) {
        m->nrcpt++;
        why = qa_fetch_rcpt(e + p, &m->rcpts[i]);
        p += QA_FETCH_RSTRIDE;
    }
    *pos = p;
    return why;
}

int queue_admin_fetch(struct queue *q, const char (*ids)[QID_SIZE], size_t nids,
                      struct queue_admin_msg *out, size_t *nout, size_t *nused,
                      struct sy_err *err)
{
    char sched[QUEUE_KEY_MAX], held[QUEUE_KEY_MAX], msgbase[QUEUE_KEY_MAX], rcptbase[QUEUE_KEY_MAX];
    struct queue_args a;
    redisReply *rep;
    const char *why = NULL;
    long long used;
    size_t pos = 1, n = 0;
    int rc;

    *nout = 0;
    *nused = 0;
    if (nids == 0)
        return SY_OK;
    for (size_t i = 0; i < nids; i++)
        if (queue_check_qid(ids[i], err) != SY_OK)
            return SY_ESYNTAX;
    queue_key(q, sched, sizeof(sched), "sched");
    queue_key(q, held, sizeof(held), "held");
    queue_key(q, msgbase, sizeof(msgbase), "msg:");
    queue_key(q, rcptbase, sizeof(rcptbase), "rcpt:");
    queue_script_args(&a);
    queue_args_str(&a, sched);
    queue_args_str(&a, held);
    queue_args_str(&a, msgbase);
    queue_args_str(&a, rcptbase);
    queue_args_i64(&a, (int64_t) QA_FETCH_RCPT_BUDGET);
    queue_args_i64(&a, (int64_t) QA_RCPT_MAX);
    for (size_t i = 0; i < nids; i++)
        queue_args_str(&a, ids[i]);
    rc = queue_script(q, QS_FETCH, qa_lua_fetch, &a, 2, &rep, err);
    queue_args_free(&a);
    if (rc != SY_OK)
        return SY_ETEMP;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        qa_int(rep->element[0], 0, (long long) nids, &used) != 0) {
        freeReplyObject(rep);
        return queue_unexpected(q, "queue fetch", err);
    }
    for (size_t i = 1; i < rep->elements; i++)
        if (rep->element[i]->type != REDIS_REPLY_STRING) {
            freeReplyObject(rep);
            return queue_unexpected(q, "queue fetch", err);
        }
    while (pos < rep->elements && why == NULL) {
        if (n >= nids) {
            why = "message count";
            break;
        }
        memset(&out[n], 0, sizeof(out[n]));
        why = qa_fetch_msg(rep, &pos, &out[n]);
        n++;
    }
    freeReplyObject(rep);
    if (why != NULL) {
        for (size_t i = 0; i < n; i++)
            queue_admin_msg_free(&out[i]);
        return sy_err_set(err, SY_ETEMP, "4.3.0", "redis: queue fetch: malformed %s", why);
    }
    *nout = n;
    *nused = (size_t) used;
    return SY_OK;
}
