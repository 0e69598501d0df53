#!/usr/bin/env bash
# The one gate: exactly what CI runs. Read-only: it never rewrites files (it may install the
# `chromium` system package, which the dashboard test renders its page in, `iptables`, which
# the fault-injection scripts' test partitions its network namespaces with, and `dovecot-imapd`
# and `dovecot-lmtpd`, the IMAP differential test's reference server).
#   fmt check, clippy with warnings denied, every test (nextest when present), benches in --test mode.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== import cycles (no two files of a crate import from each other, directly or not)"
python3 scripts/check-import-cycles.py --self-test
python3 scripts/check-import-cycles.py

echo "== design citations (every ARCHITECTURE.md § a code comment cites exists)"
python3 scripts/check-doc-refs.py --self-test
python3 scripts/check-doc-refs.py
python3 scripts/bench/deliver_table.py --self-test
python3 scripts/bench/vs_dovecot_table.py --self-test
python3 scripts/bench/vs_etcd_table.py --self-test

# Installs Debian package $2 (default: $1), which provides command $1, as root when the command
# is missing; on failure says which tests ($3, or $2 when only two arguments are given) will
# fail, and goes on.
install_if_missing() {
  local command="$1" package what
  if [ $# -ge 3 ]; then package="$2"; what="$3"; else package="$1"; what="$2"; fi
  command -v "$command" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  local apt_log
  apt_log="$(mktemp)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" \
         || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package"; }; } \
       >"$apt_log" 2>&1; then
    echo "could not install $package ($what will fail):"
    tail -n 5 "$apt_log"
  fi
  rm -f "$apt_log"
}

echo "== chromium (tests/t60_dashboard.rs renders the dashboard in it)"
install_if_missing chromium "the dashboard test"
command -v chromium >/dev/null 2>&1 && chromium --version 2>/dev/null || echo "chromium: not available"
# Without Chromium the dashboard test fails here instead of skipping.
export DOVETAIL_REQUIRE_CHROMIUM=1

echo "== iptables (tests/t70_netns_scripts.rs runs scripts/netns-cluster.sh and partition.sh)"
install_if_missing iptables "the netns scripts test and the Jepsen suite"
# As root, network namespaces are available, so the netns test fails instead of skipping.
if [ "$(id -u)" = 0 ]; then
  export DOVETAIL_REQUIRE_NETNS=1
  # ... and the tests that mount small file systems (tests/t52_disk_full.rs) too.
  export DOVETAIL_REQUIRE_ROOT=1
fi

echo "== dovecot (tests/t69_imap_differential.rs runs the same IMAP sessions against Dovecot 2.3)"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
   && { [ ! -x /usr/sbin/dovecot ] || [ ! -x /usr/lib/dovecot/lmtp ]; }; then
  dovecot_log="$(mktemp)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd dovecot-lmtpd \
         || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd dovecot-lmtpd; }; } \
       >"$dovecot_log" 2>&1; then
    echo "could not install dovecot-imapd dovecot-lmtpd (the IMAP differential test will fail):"
    tail -n 5 "$dovecot_log"
  fi
  rm -f "$dovecot_log"
fi
if [ "$(id -u)" = 0 ]; then
  # As root the reference Dovecot can run, so the differential test fails instead of skipping.
  export DOVETAIL_REQUIRE_DOVECOT=1
  if [ -x /usr/sbin/dovecot ]; then python3 scripts/dovecot_ref.py --self-test; fi
fi

echo "== mail clients (tests/t67_mail_clients.rs runs mbsync and offlineimap, t68_lmtp_clients.rs swaks)"
install_if_missing mbsync isync "the mbsync test"
install_if_missing offlineimap offlineimap3 "the offlineimap test"
install_if_missing swaks swaks "the swaks test"
# As root the clients are installed above, so a missing one fails those tests instead of skipping.
if [ "$(id -u)" = 0 ]; then
  export DOVETAIL_REQUIRE_MAIL_CLIENTS=1
fi

echo "== tests"
# The proxy test of tests/t70_netns_scripts.rs runs the Jepsen package's TCP proxy.
cargo build --locked -p dovetail-jepsen --bin dovetail-jepsen
export DOVETAIL_JEPSEN_BIN="$PWD/target/debug/dovetail-jepsen"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --config-file scripts/nextest.toml
  # nextest does not run doctests
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== jepsen (short suite: uid/partition, set/kill, flags/pause, list/membership, bodies/kill; 3 nodes in network namespaces)"
if [ "$(id -u)" = 0 ]; then
  cargo build --locked -p dovetail --bin dovetail -p dovetail-jepsen --bin dovetail-jepsen
  target/debug/dovetail-jepsen suite --bin target/debug/dovetail --time-limit 30 --store target/jepsen-store
elif [ "${DOVETAIL_SKIP_JEPSEN:-0}" = 1 ]; then
  echo "skipped: DOVETAIL_SKIP_JEPSEN=1 (the suite needs root for namespaces and iptables)"
else
  echo "the Jepsen suite needs root (network namespaces, iptables); set DOVETAIL_SKIP_JEPSEN=1 to skip it" >&2
  exit 1
fi

echo "== benches (--test mode: each benchmark runs once, nothing is measured)"
cargo bench --workspace --locked --bench '*' -- --test
