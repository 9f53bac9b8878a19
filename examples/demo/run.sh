#!/usr/bin/env bash
# Runs the demo migration: starts qliksim with the demo site, runs the demo
# job against it with qmig-lua, prints the outcome, stops the simulator.
# Usage: examples/demo/run.sh [extra qmig-lua run options]
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${QMIG_DEMO_DIR:-$PWD/demo-run}
mkdir -p "$work"
# The simulated tenant starts empty every time, so the project (whose cache
# describes that tenant) starts afresh too.
rm -rf "$work/project"
info="$work/qliksim.json"
rm -f "$info"

python3 tests/qliksim/qliksim.py --site examples/demo/site.json --certs "$work/certs" \
  --info-file "$info" >"$work/qliksim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do [ -s "$info" ] && break; sleep 0.1; done
[ -s "$info" ] || { echo "qliksim did not start; see $work/qliksim.log" >&2; exit 1; }

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$info" "$1"; }
export QMIG_DEMO_QRS_URL QMIG_DEMO_CLOUD_URL QMIG_DEMO_API_KEY QMIG_DEMO_CERTS QMIG_DEMO_PROJECT
QMIG_DEMO_QRS_URL=$(field qrs_url)
QMIG_DEMO_CLOUD_URL=$(field cloud_url)
QMIG_DEMO_API_KEY=$(field api_key)
QMIG_DEMO_CERTS="$work/certs"
QMIG_DEMO_PROJECT="$work/project"
export QMIG_DEMO_DIR="$work"
# Passwords are never readable from QSEoW; they come from a private file.
( umask 077; cat >"$work/secrets.yaml" <<'SECRETS'
Finance DB: {username: qlik_reader, password: demo-finance-password}
Sales DB (CORP_jdoe): {username: qlik_reader, password: demo-sales-password}
SECRETS
)
chmod 600 "$work/secrets.yaml"

echo "qliksim: QRS $QMIG_DEMO_QRS_URL, Cloud $QMIG_DEMO_CLOUD_URL"
status=0
# QMIG_DEMO_WRAP runs qmig-lua under a tool (the valgrind check uses it).
# QMIG_DEMO_COMMANDS=1 (make memcheck) also runs check and plan before the
# migration, plan and undo after it; any of them failing fails the script.
other() {  # command...
  echo "--- qmig-lua $* examples/demo/job.yaml"
  ${QMIG_DEMO_WRAP:-} ./qmig-lua "$@" examples/demo/job.yaml >"$work/$1.out" 2>&1 || {
    rc=$?; tail -n 40 "$work/$1.out"; echo "qmig-lua $1: exit $rc" >&2; exit "$rc"; }
}
if [ -n "${QMIG_DEMO_COMMANDS:-}" ]; then other check; other plan; fi
${QMIG_DEMO_WRAP:-} ./qmig-lua run examples/demo/job.yaml "$@" || status=$?
# The demo site changes Accounts Payable's connection on purpose, so that
# apps.validate has a difference to show: exit 1 with that failure and no
# other is the demo's expected outcome (tests/lua/lib/demo_outcome.lua).
if [ "$status" -eq 1 ] && ./qmig-lua status examples/demo/job.yaml --failed --json 2>/dev/null | python3 -c '
import json, sys
failed = [(r["step"], r["name"]) for r in json.load(sys.stdin)]
sys.exit(0 if failed == [("apps.validate", "Accounts Payable")] else 1)'; then
  echo
  echo "As the demo intends: apps.validate finds that Accounts Payable loads other data in Qlik Cloud (the demo"
  echo "site moves its script to another connection), so the run exits 1; the report's Validation section shows"
  echo "the difference. Everything else migrated."
  status=0
fi
# The NPrinting reports go onto the migrated apps: a job of their own, same project.
export QMIG_DEMO_NP_URL QMIG_DEMO_NP_JWT QMIG_DEMO_NP_EXPORT
QMIG_DEMO_NP_URL=$(field nprinting_url)
QMIG_DEMO_NP_JWT=$(field nprinting_jwt)
QMIG_DEMO_NP_EXPORT=$(field nprinting_export)
if [ "$status" -eq 0 ]; then
  ${QMIG_DEMO_WRAP:-} ./qmig-lua run examples/demo/nprinting.yaml "$@" || status=$?
fi
if [ -n "${QMIG_DEMO_COMMANDS:-}" ] && [ "$status" -eq 0 ]; then other plan; other undo; fi
# The job file reads every QMIG_DEMO_* variable (an unset one is an error),
# so the commands printed below source them from a file instead of asking
# the reader to set them; mode 0600: it holds the simulator's API key.
env_file="$work/env.sh"
( umask 077
  for v in QMIG_DEMO_QRS_URL QMIG_DEMO_CLOUD_URL QMIG_DEMO_API_KEY QMIG_DEMO_CERTS QMIG_DEMO_PROJECT QMIG_DEMO_DIR \
      QMIG_DEMO_NP_URL QMIG_DEMO_NP_JWT QMIG_DEMO_NP_EXPORT; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done >"$env_file" )
echo
echo "project folder: $QMIG_DEMO_PROJECT (cache qmig.db, logs/, exports/, reports/report.html)"
echo "per step and per object (the simulator has stopped; these read the project only):"
echo "  . $env_file && ./qmig-lua status examples/demo/job.yaml --objects"
echo "  . $env_file && ./qmig-lua report examples/demo/job.yaml"
exit $status
