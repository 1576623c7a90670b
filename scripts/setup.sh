# Sourced by scripts/test and scripts/demo: make .venv with provd (editable) and its test tools.
# Debian packages for the real-peer tests are installed when running as root and missing.
# faketime: the clock-step test moves the daemon's wall clock (LD_PRELOAD), never the host's.
APT_PACKAGES="python3-venv sqlite3 time nginx lighttpd iproute2 isc-dhcp-server dnsmasq-base chrony sip-tester sipsak faketime"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "== apt-get install$missing"
        # chrony, isc-dhcp-server and nginx must not start as system services here: chrony would
        # discipline the host clock. The tests run their own instances inside network namespaces.
        own_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            own_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
        if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    fi
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$PY" -m venv .venv
fi
if [ ! -f .venv/.provd-installed ] || [ pyproject.toml -nt .venv/.provd-installed ]; then
    echo "== pip install -e .[test]"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
    touch .venv/.provd-installed
fi
