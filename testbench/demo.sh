#!/usr/bin/env bash
# The Atelier demo: the whole story on embedded defaults, end to end.
#   start a hub → create a workspace → train the sample model several times with
#   different parameters → show which run was best → fetch its model → register it
#   → enroll an edge agent → deploy the model to it → score the held-out rows through
#   the agent's endpoint → stop the agent and the hub.
# Run it with `make demo` (which runs the setup step and builds bin/ first).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
export PATH="$BIN:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/atelier-demo.XXXXXX")"
hub_pid=""
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -TERM "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  if [ -n "$hub_pid" ] && kill -0 "$hub_pid" 2>/dev/null; then
    kill -TERM "$hub_pid" 2>/dev/null || true
    wait "$hub_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "Start a hub (embedded SQLite, blob store and NATS/MQTT broker; ports chosen at random on loopback)"
atelier hub serve --data "$work/hub" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --nats 127.0.0.1:0 \
  2>"$work/hub.log" &
hub_pid=$!
for _ in $(seq 1 200); do
  [ -s "$work/hub/hub.addr" ] && break
  kill -0 "$hub_pid" 2>/dev/null || { cat "$work/hub.log"; echo "demo: the hub exited early" >&2; exit 1; }
  sleep 0.05
done
[ -s "$work/hub/hub.addr" ] || { cat "$work/hub.log"; echo "demo: the hub did not start" >&2; exit 1; }
http_addr="$(sed -n 's/.*"http": *"\([^"]*\)".*/\1/p' "$work/hub/hub.addr")"
export ATELIER_HUB="http://$http_addr"
echo "hub listening at $ATELIER_HUB"

step "Create a workspace"
atelier workspace create demo --description "Atelier demo workspace"
export ATELIER_WORKSPACE=demo

step "Train the sample model (UCI digits MLP) three times with different parameters"
for params in "lr=0.01 hidden=16" "lr=0.05 hidden=32" "lr=0.2 hidden=64"; do
  args=()
  for p in $params; do args+=(--param "$p"); done
  echo "--- run submit ${args[*]}"
  atelier run submit -e digits "${args[@]}" --param epochs=20 --dir testbench/sample/train -- go run . \
    | grep -v '^::' | tail -n 3
done

step "All runs of the experiment, best held-out accuracy first"
atelier run list -e digits --order-by metrics.accuracy:desc

best="$(atelier run list -e digits --order-by metrics.accuracy:desc --top 1 -o json \
  | grep -o '"id": *"[^"]*"' | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')"
[ -n "$best" ] || { echo "demo: no best run found" >&2; exit 1; }

step "The best run: $best"
atelier run show "$best"

step "Compare every run's parameters and latest metrics"
# shellcheck disable=SC2046
atelier run compare $(atelier run list -e digits -o json | grep -o '"id": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')

step "Download the best run's model"
atelier run download "$best" model.onnx --to "$work/best"
ls -l "$work/best"

step "Register the best run's model in the model registry"
atelier model register digits --run "$best" --path model.onnx -d "best of the demo's runs"
atelier model versions digits

step "Enroll an edge agent with a one-time join token"
token="$(atelier agent token create -o json | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')"
[ -n "$token" ] || { echo "demo: no join token" >&2; exit 1; }
# --listen 127.0.0.1:0: the agent picks a free loopback port and prints it first.
atelier-agent run --hub "$ATELIER_HUB" --join-token "$token" --data "$work/agent" --telemetry-interval 1s \
  --listen 127.0.0.1:0 >"$work/agent.out" 2>"$work/agent.log" &
agent_pid=$!
endpoint=""
for _ in $(seq 1 200); do
  endpoint="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/agent.out" | head -n 1)"
  [ -n "$endpoint" ] && [ -s "$work/agent/credentials.json" ] && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log"; echo "demo: the agent exited early" >&2; exit 1; }
  sleep 0.05
done
[ -n "$endpoint" ] || { cat "$work/agent.log"; echo "demo: the agent did not start" >&2; exit 1; }
agent_id="$(sed -n 's/.*"agent_id": *"\([^"]*\)".*/\1/p' "$work/agent/credentials.json")"
echo "agent $agent_id enrolled; scoring endpoint $endpoint"
atelier agent list

step "Deploy digits:1 to the agent and wait until it serves"
atelier deploy create digits --model digits:1 --target "$agent_id"
for _ in $(seq 1 300); do
  atelier deploy show digits -o json | grep -q '"state": *"serving"' && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log"; echo "demo: the agent exited" >&2; exit 1; }
  sleep 0.1
done
atelier deploy show digits -o json | grep -q '"state": *"serving"' \
  || { atelier deploy show digits; cat "$work/agent.log"; echo "demo: the deployment did not reach serving" >&2; exit 1; }
atelier deploy show digits

step "Score the best run's held-out rows through the agent's endpoint"
atelier run download "$best" heldout.csv --to "$work/best"
go run ./testbench/cmd/scoreheldout --url "$endpoint" --model digits --csv "$work/best/heldout.csv"

step "What the hub saw: the agent's telemetry and the event log"
for _ in $(seq 1 100); do
  atelier deploy metrics digits -o json | grep -q '"requests": *[1-9]' && break
  sleep 0.1
done
atelier deploy metrics digits
atelier events

step "Stop the agent"
kill -TERM "$agent_pid"
wait "$agent_pid"
agent_pid=""
echo "agent stopped cleanly"

step "Stop the hub"
kill -TERM "$hub_pid"
wait "$hub_pid"
hub_pid=""
echo "hub stopped cleanly"
