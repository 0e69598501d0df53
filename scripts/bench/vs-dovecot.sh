#!/usr/bin/env bash
# Dovetail's 3-node cluster against Dovecot 2.3 on one node, side by side in one run (issue 18,
# Performance): LMTP deliveries/s of 4 KiB messages at 16 sessions, and `UID FETCH 1:* (FLAGS
# ENVELOPE)` and `(BODY.PEEK[])` of 1,000 messages.
#
#   scripts/bench/vs-dovecot.sh [--bin PATH] [--rounds 3] [--duration 10] [--dovecot-fsync optimized|always]
#                               [more flags of scripts/bench/vs_dovecot.py: --help lists them]
#
# Checks what the run needs and installs nothing: root (Dovecot's master switches users), the
# Debian packages dovecot-imapd and dovecot-lmtpd, python3. Builds target/release/dovetail when
# it is missing (or takes --bin); says so when it is older than the sources. Starts nothing but
# scripts/bench/vs_dovecot.py, which starts both servers, measures, prints the table
# (scripts/bench/vs_dovecot_table.py) and a JSON line, and stops what it started.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exec python3 "$ROOT/scripts/bench/vs_dovecot.py" --help ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

missing=()
[ "$(id -u)" = 0 ] || missing+=("root (Dovecot's master drops to the dovecot user)")
command -v python3 >/dev/null 2>&1 || missing+=("python3")
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || missing+=("dovecot (apt-get install dovecot-imapd dovecot-lmtpd)")
[ -x /usr/lib/dovecot/imap ] || missing+=("Dovecot's imap (apt-get install dovecot-imapd)")
[ -x /usr/lib/dovecot/lmtp ] || missing+=("Dovecot's lmtp (apt-get install dovecot-lmtpd)")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'vs-dovecot.sh: missing: %s\n' "${missing[@]}" >&2
  exit 2
fi

if [ -z "$BIN" ]; then
  BIN="$ROOT/target/release/dovetail"
  if [ ! -x "$BIN" ]; then
    echo "vs-dovecot.sh: building target/release/dovetail ..." >&2
    (cd "$ROOT" && cargo build --release --quiet --bin dovetail)
  elif [ -n "$(find "$ROOT/src" "$ROOT/raft/src" "$ROOT/Cargo.lock" -newer "$BIN" -print -quit 2>/dev/null)" ]; then
    echo "vs-dovecot.sh: note: $BIN is older than the sources (cargo build --release --bin dovetail)" >&2
  fi
fi

echo "vs-dovecot.sh: $(uptime)" >&2
status=0
python3 "$ROOT/scripts/bench/vs_dovecot.py" --bin "$BIN" ${ARGS[@]+"${ARGS[@]}"} || status=$?
echo "vs-dovecot.sh: $(uptime)" >&2
exit "$status"
