#!/usr/bin/env bash
# Heals every partition of the netns cluster: removes the nemesis rules (the DOVETAIL-NEMESIS
# chain and every rule tagged `dovetail-nemesis`) from every dvt* namespace, whatever spec put
# them there. Safe when nothing is partitioned, or nothing is up.
#
#   heal.sh
set -euo pipefail
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/netns-lib.sh"
DVT_USAGE="heal.sh"

[ $# = 0 ] || dvt_usage_error "heal.sh takes no arguments"
dvt_require_root
command -v iptables >/dev/null 2>&1 || exit 0
for ns in $(dvt_namespaces); do
  dvt_heal_namespace "$ns"
done
