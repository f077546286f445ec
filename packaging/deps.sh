#!/bin/bash
# deps.sh - install every Debian 12 package switchyard needs to build, test
# and run. Idempotent: installs only what is missing, starts no service.
# Called by `make deps`, `make test` and `make run`.
set -euo pipefail

PKGS=(
    # build
    gcc make pkg-config clang llvm libclang-rt-14-dev cppcheck clang-tidy
    libmilter-dev libssl-dev libunbound-dev libhiredis-dev
    libcurl4-openssl-dev libcjson-dev libgsasl-dev libmicrohttpd-dev
    libcyaml-dev libyaml-dev libgmime-3.0-dev libcmocka-dev
    # run
    redis-server redis-tools
    # test peers
    postfix swaks python3-aiosmtpd python3-pytest miltertest python3-milter
    python3-dkim
    libnet-ssleay-perl libio-socket-inet6-perl libauthen-sasl-perl
    dovecot-core gsasl
    openssl curl procps
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: run as root (or: sudo make deps)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Never let a package's postinst start redis or postfix on their standard
# ports: tests start private instances on free loopback ports instead.
if [ ! -x /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
fi
# Postfix "No configuration": we only run private instances (postfix -c DIR).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
echo "deps.sh: installing ${missing[*]}" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
