#!/bin/bash
# pf-instance.sh - private, loopback-only Postfix instance in a temp directory
# (no systemd, no syslog), used by the switchyard integration tests (conftest.py).
# Debian 12 postfix 3.7, as root (Postfix's master must start as root; it drops
# to mail_owner=postfix itself). IPv4 loopback only.
#
#   pf-instance.sh init  DIR [param=value ...]  create DIR/{etc,spool,data,log}, main.cf, master.cf
#   pf-instance.sh conf  DIR param=value ...    postconf -e in the instance (then 'reload')
#   pf-instance.sh start DIR                    postfix -c DIR/etc start (daemonizes; ~0.25 s)
#   pf-instance.sh reload DIR
#   pf-instance.sh stop  DIR                    postfix stop + wait until master.pid is gone
#   pf-instance.sh wait-log DIR REGEX [secs]    wait until the maillog has a line matching REGEX
#   pf-instance.sh wait-empty DIR [secs]        wait until the queue is empty (postqueue -j)
#   pf-instance.sh flush DIR                    retry deferred mail now (postqueue -f)
#   pf-instance.sh clear DIR                    delete every queued message (postsuper -d ALL)
#
# Environment (defaults):
#   PF_SMTPD_PORT=10025        smtpd (port 25 role) on 127.0.0.1
#   PF_LMTP_NEXTHOP=           e.g. inet:127.0.0.1:10024  -> default_transport=lmtp:$PF_LMTP_NEXTHOP
#   PF_RELAYHOST=              e.g. [127.0.0.1]:10026     -> default_transport=smtp, relayhost=...
#   PF_MILTER=                 e.g. inet:127.0.0.1:10030  -> smtpd_milters/non_smtpd_milters
#   PF_SUBMISSION_PORT=        if set: a submission smtpd with SASL on 127.0.0.1 (see PF_SASL_PATH)
#   PF_SASL_PATH=              Dovecot auth socket for it, e.g. inet:127.0.0.1:12345
set -euo pipefail

cmd=${1:?usage: $0 init|conf|start|reload|stop|wait-log|wait-empty|flush|clear DIR ...}
D=${2:?DIR missing}
shift 2 || true
case "$D" in /*) ;; *) D="$PWD/$D" ;; esac

log() { echo "pf-instance: $*" >&2; }
# a zombie still answers kill -0; in this sandbox PID 1 reaps orphans only every few s
alive() { [ -r /proc/$1/stat ] && ! awk '{exit ($3=="Z")?0:1}' /proc/$1/stat; }

case "$cmd" in
init)
    mkdir -p "$D"/etc "$D"/spool "$D"/data "$D"/log
    # every path component must be traversable by the 'postfix' user (mktemp -d gives 0700!)
    chmod 755 "$D" "$D"/etc "$D"/log
    chown postfix "$D"/data          # master.lock, tls caches: must be owned by mail_owner
    : > "$D"/log/maillog
    smtpd_port=${PF_SMTPD_PORT:-10025}
    cat > "$D"/etc/main.cf <<EOF
compatibility_level = 3.6
config_directory = $D/etc
queue_directory = $D/spool
data_directory = $D/data
mail_owner = postfix
setgid_group = postdrop
# --- logging without syslog: postlogd writes this file (Postfix >= 3.4) ---
maillog_file = $D/log/maillog
maillog_file_prefixes = $D/log
# --- identity / loopback only ---
myhostname = pf-test.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject
smtpd_recipient_restrictions =
biff = no
# never look up next hops in real DNS (no internet here anyway)
smtp_dns_support_level = disabled
lmtp_host_lookup = native
smtp_host_lookup = native
# --- fast retries for tests ---
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
# deferred mail stays deferred for ever in tests unless you flush/clear it
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
smtpd_banner = \$myhostname ESMTP test-postfix
EOF
    if [ -n "${PF_LMTP_NEXTHOP:-}" ]; then
        printf 'default_transport = lmtp:%s\nrelay_transport = lmtp:%s\n' \
            "$PF_LMTP_NEXTHOP" "$PF_LMTP_NEXTHOP" >> "$D"/etc/main.cf
    fi
    if [ -n "${PF_RELAYHOST:-}" ]; then
        printf 'default_transport = smtp\nrelay_transport = smtp\nrelayhost = %s\n' \
            "$PF_RELAYHOST" >> "$D"/etc/main.cf
    fi
    if [ -n "${PF_MILTER:-}" ]; then
        printf 'smtpd_milters = %s\nnon_smtpd_milters = %s\nmilter_default_action = tempfail\nmilter_protocol = 6\n' \
            "$PF_MILTER" "$PF_MILTER" >> "$D"/etc/main.cf
    fi
    # master.cf: no chroot anywhere (column 5 = n), smtpd bound to loopback:port
    cat > "$D"/etc/master.cf <<EOF
127.0.0.1:$smtpd_port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    if [ -n "${PF_SUBMISSION_PORT:-}" ]; then
        cat >> "$D"/etc/master.cf <<EOF
127.0.0.1:$PF_SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=${PF_SASL_PATH:?PF_SASL_PATH needed with PF_SUBMISSION_PORT}
  -o smtpd_tls_auth_only=no
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
EOF
    fi
    for kv in "$@"; do postconf -c "$D"/etc -e "$kv"; done
    # 'postfix check' creates the queue directories with the right owners/modes
    postfix -c "$D"/etc check
    log "initialised $D (smtpd 127.0.0.1:$smtpd_port)"
    ;;
conf)
    for kv in "$@"; do postconf -c "$D"/etc -e "$kv"; done ;;
start)
    # NB: config-parse errors go to syslog or a tty only; run under `script -qc`
    # to see them if start fails with no maillog line.
    postfix -c "$D"/etc start || { tail -5 "$D"/log/maillog >&2; exit 1; } ;;
reload)
    postfix -c "$D"/etc reload ;;
stop)
    if [ -f "$D"/spool/pid/master.pid ]; then
        pid=$(sed 1q "$D"/spool/pid/master.pid | tr -d ' ')
        postfix -c "$D"/etc stop || true
        for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then log "master $pid still alive, SIGKILL"; kill -9 "$pid"; fi
    fi
    exit 0 ;;
wait-log)
    re=${1:?REGEX}; t=${2:-20}; end=$((SECONDS + t))
    until grep -Eq -- "$re" "$D"/log/maillog; do
        [ $SECONDS -ge $end ] && { log "timeout waiting for /$re/"; exit 1; }
        sleep 0.1
    done ;;
wait-empty)
    t=${1:-20}; end=$((SECONDS + t))
    # postqueue -j prints one JSON object per queued message, nothing when empty
    until [ -z "$(postqueue -c "$D"/etc -j)" ]; do
        [ $SECONDS -ge $end ] && { log "timeout: queue not empty"; postqueue -c "$D"/etc -p >&2; exit 1; }
        sleep 0.1
    done ;;
flush) postqueue -c "$D"/etc -f ;;
clear) postsuper -c "$D"/etc -d ALL ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
