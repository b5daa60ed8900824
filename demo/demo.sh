#!/usr/bin/env bash
# The main job, end to end, on embedded defaults, in a temporary folder that is
# removed afterwards. Each stage of the project extends it.
set -euo pipefail

workdir=$(mktemp -d "${TMPDIR:-/tmp}/tentacle-demo.XXXXXX")
trap 'rm -rf "$workdir"' EXIT
export TENTACLE_CONFIG_HOME="$workdir/config"

step() { printf '\n== %s\n' "$*"; }

step "Two instances side by side: a worker agent and the hub's identity"
tentacle create-instance --instance worker
tentacle create-instance --instance hub
tentacle list-instances

step "Each gets its own self-signed certificate (private key 0600 in its home)"
tentacle new-certificate --instance worker
tentacle new-certificate --instance hub
tentacle show-thumbprint --instance worker
tentacle show-thumbprint --instance hub

step "They trust each other by exchanging public certificates"
tentacle export-certificate --instance worker --file "$workdir/worker.pem"
tentacle export-certificate --instance hub --file "$workdir/hub.pem"
tentacle configure --instance worker --trust-certificate "$workdir/hub.pem"
tentacle configure --instance hub --trust-certificate "$workdir/worker.pem"
tentacle show-configuration --instance worker

step "The worker listens (on loopback, any free port) and the hub calls it"
tentacle configure --instance worker --listenIpAddress 127.0.0.1 --port 0
coproc AGENT { exec tentacle agent --instance worker 2>"$workdir/agent.log"; }
agent_pid=$AGENT_PID
trap 'kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; rm -rf "$workdir"' EXIT
read -r ready <&"${AGENT[0]}"   # blocks until the agent prints its readiness line
echo "$ready"
endpoint="https://${ready#*wss://}"
worker_thumbprint=$(tentacle show-thumbprint --instance worker --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["Thumbprint"])')
call() { tentacle client --instance hub "$1" --endpoint "$endpoint" --thumbprint "$worker_thumbprint" "${@:2}"; }

call capabilities
head -c 5000000 /dev/urandom > "$workdir/package.zip"
call upload "$workdir/package.zip" Files/package.zip
call download Files/package.zip "$workdir/package-back.zip"
cmp "$workdir/package.zip" "$workdir/package-back.zip" && echo "Round trip: identical"

step "The worker runs a script: live output, its own exit code"
cat > "$workdir/hello.sh" <<'SCRIPT'
echo "Hello $1 from $(hostname), in $PWD"
echo "TentacleInstanceName=$TentacleInstanceName"
ls -l package.zip
echo "a warning goes to stderr" >&2
exit 3
SCRIPT
set +e
call run-script --file "$workdir/package.zip" "$workdir/hello.sh" -- "demo user"
code=$?
set -e
echo "run-script exited with $code (the script's own exit code)"
[ "$code" -eq 3 ]

step "The worker deploys a package: extract, templated config, structured settings, Deploy.sh"
mkdir -p "$workdir/pkg/config"
cat > "$workdir/pkg/config/app.conf" <<'CONF'
# rendered by tentacle calamari on #{Octopus.Machine.Name}
listen = #{Web.Port}
#{each server in Servers}upstream #{server}
#{/each}#{if Debug}log_level = debug#{else}log_level = warn#{/if}
CONF
echo '{"Database": {"Host": "localhost", "Port": 5432}, "Debug": false}' > "$workdir/pkg/config/appsettings.json"
cat > "$workdir/pkg/Deploy.sh" <<'SCRIPT'
echo "Deploy.sh: installing #{Octopus.Action.Package.PackageId} into $PWD"
set_octopusvariable DeployedAt "$(date -u +%FT%TZ)"
SCRIPT
(cd "$workdir/pkg" && python3 -m zipfile -c "$workdir/Acme.Web.1.0.0.zip" config Deploy.sh)
cat > "$workdir/variables.json" <<'JSON'
[
  {"name": "Octopus.Machine.Name", "value": "demo-worker"},
  {"name": "Octopus.Action.Package.PackageId", "value": "Acme.Web"},
  {"name": "Web.Port", "value": "8080"},
  {"name": "Servers", "value": "10.0.0.1:80,10.0.0.2:80"},
  {"name": "Debug", "value": "False"},
  {"name": "Database:Host", "value": "db.internal"},
  {"name": "Database:Password", "value": "correct horse", "sensitive": true},
  {"name": "Octopus.Action.SubstituteInFiles.TargetFiles", "value": "config/*.conf"},
  {"name": "Octopus.Action.StructuredConfigurationVariables.Targets", "value": "config/*.json"}
]
JSON
call upload "$workdir/Acme.Web.1.0.0.zip" Files/Acme.Web.1.0.0.zip
call upload "$workdir/variables.json" Files/variables.json
cat > "$workdir/deploy.sh" <<'SCRIPT'
set -e
# the agent tells its scripts where its home and its applications folder are
tentacle calamari deploy-package --package "$TentacleHome/Files/Acme.Web.1.0.0.zip" \
    --variables "$TentacleHome/Files/variables.json"
cat "$TentacleApplications"/Acme.Web/1.0.0/config/app.conf "$TentacleApplications"/Acme.Web/1.0.0/config/appsettings.json
SCRIPT
call run-script "$workdir/deploy.sh" | tee "$workdir/deploy.out"
grep -q "listen = 8080" "$workdir/deploy.out" && echo "Deployed and configured"

step "The agent stops cleanly on SIGTERM"
kill -TERM "$agent_pid"
wait "$agent_pid"
cat "$workdir/agent.log"

step "A polling agent: it dials out to the hub, for workers behind NAT or firewalls"
tentacle create-instance --instance poller
tentacle new-certificate --instance poller
tentacle export-certificate --instance poller --file "$workdir/poller.pem"
hub_thumbprint=$(tentacle show-thumbprint --instance hub --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["Thumbprint"])')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tentacle server-comms --instance poller --style TentacleActive --host 127.0.0.1 --port "$port" --thumbprint "$hub_thumbprint"
tentacle configure --instance poller --noListen true
subscription=$(tentacle show-configuration --instance poller --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["PollingServers"][0]["SubscriptionId"])')

# the hub side listens on $port for that subscription and runs the script there
tentacle client --instance hub run-script --endpoint "$subscription" --listen "127.0.0.1:$port" \
    --agent-certificate "$workdir/poller.pem" --file "$workdir/package.zip" "$workdir/hello.sh" -- "polling user" \
    >"$workdir/polled.out" 2>"$workdir/polled.err" &
hub_pid=$!
tentacle agent --instance poller >/dev/null 2>"$workdir/poller.log" &
poller_pid=$!
trap 'kill "$agent_pid" "$poller_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$workdir"' EXIT
set +e
wait "$hub_pid"
code=$?
set -e
cat "$workdir/polled.out" "$workdir/polled.err"
echo "run-script over polling exited with $code"
[ "$code" -eq 3 ]
kill -TERM "$poller_pid"
wait "$poller_pid"
grep -E "polling|stopped" "$workdir/poller.log"

step "Done"
