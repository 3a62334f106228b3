#!/usr/bin/env bash
# Builds a four-member development consortium in DIR using only the tfx CLI:
#   DIR/consortium/         the CA, the governors' keys (dev only: real governors keep their own),
#                           and the roster chain
#   DIR/<member>/           each member's node directory: keys (0600), certificate, roster,
#                           policy, node.toml
# The starting data-minimization policy (deploy/policy.example.toml) is signed as version 1 and
# installed on every node; the consortium pseudonym secret is sealed into the join bundles of
# the issuing members (science-dept, pbc-chengdu, bank-a) and never into risk-warning's, which
# runs the rules of deploy/warnings.example.toml.
# Members: science-dept, pbc-chengdu (central bank branch), bank-a, risk-warning, on 127.0.0.1.
# Governors: science-dept, local-finance, central-bank, threshold 2, all held locally, so every
# approval completes at once. Never use this for anything but development: all keys sit together.
#
# Usage: certs/dev-consortium.sh DIR        (TFX=path/to/tfx to choose the binary,
#                                            TFX_BASE_PORT=N for ports N..N+3 instead of 7401..7404)
#
# TFX_HOSTS=names lists each member in the roster at <member id>:<port> (science-dept:7401, …)
# instead of 127.0.0.1:<port>, for nodes that reach each other by host name, one per container:
# deploy/compose.yaml names its services after the members. Unset (the default), every member
# is on 127.0.0.1.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$1
hosts=${TFX_HOSTS:-}
if [ -n "$hosts" ] && [ "$hosts" != names ]; then
  echo "dev-consortium: TFX_HOSTS must be 'names' or unset, not '$hosts'" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
tfx=${TFX:-}
if [ -z "$tfx" ]; then
  for candidate in "$here/target/release/tfx" "$here/target/debug/tfx"; do
    if [ -x "$candidate" ]; then tfx=$candidate; break; fi
  done
fi
if [ -z "$tfx" ]; then
  echo "dev-consortium: no tfx binary; run 'cargo build --release' or set TFX" >&2
  exit 2
fi
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "dev-consortium: $dir exists and is not empty" >&2
  exit 2
fi
mkdir -p "$dir"

"$tfx" consortium init --dir "$dir/consortium" --name "Sichuan sci-tech finance (dev)" \
  --governor science-dept --governor local-finance --governor central-bank --threshold 2
genesis=$(cat "$dir/consortium/genesis.sha256")
"$tfx" policy sign --consortium "$dir/consortium" "$dir/consortium/policy.toml"

port=${TFX_BASE_PORT:-7401}
while read -r id role name; do
  host=127.0.0.1
  if [ "$hosts" = names ]; then host=$id; fi
  "$tfx" member init --dir "$dir/$id" --id "$id" --name "$name" --role "$role" --endpoint "$host:$port"
  "$tfx" member approve --consortium "$dir/consortium" "$dir/$id/join-request.json" --out "$dir/$id.bundle"
  "$tfx" member join --dir "$dir/$id" --genesis "$genesis" "$dir/$id.bundle"
  "$tfx" policy install --offline --node "$dir/$id" "$dir"/consortium/policy/v*.tfxpolicy
  if [ "$role" = risk-warning ]; then
    cp "$here/deploy/warnings.example.toml" "$dir/$id/warnings.toml"
    printf '\n[risk_warning]\nrules = "warnings.toml"\n' >> "$dir/$id/node.toml"
  fi
  port=$((port + 1))
done <<'MEMBERS'
science-dept science-dept 四川省科学技术厅
pbc-chengdu central-bank 中国人民银行成都分行
bank-a bank 天府银行科技支行
risk-warning risk-warning 科技金融风险预警系统
MEMBERS

# Earlier members joined under older roster versions. Publishing the latest on one governor's
# node is enough: every peer adopts it from there through sync.
"$tfx" roster install --dir "$dir/science-dept" "$dir"/consortium/roster/v*.tfxroster

"$tfx" roster show "$dir/consortium"
echo "dev consortium ready in $dir (genesis $genesis)"
