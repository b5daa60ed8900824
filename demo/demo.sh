#!/usr/bin/env bash
# The main job, end to end, on embedded defaults, in a temporary folder that is
# removed afterwards. Each stage of the project extends it.
set -euo pipefail

workdir=$(mktemp -d "${TMPDIR:-/tmp}/tentacle-demo.XXXXXX")
# mktemp's folder is 0700: run as root, the agent runs scripts as unprivileged uids,
# which must pass through it to reach their workspaces (it refuses to start otherwise)
chmod 711 "$workdir"
pids=()  # every background process started below, stopped on any exit
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$workdir"
}
trap cleanup EXIT
export TENTACLE_CONFIG_HOME="$workdir/config"

step() { printf '\n== %s\n' "$*"; }

step "Two instances side by side: a worker agent and a caller's identity"
tentacle create-instance --instance worker
tentacle create-instance --instance caller
tentacle list-instances

step "Each gets its own self-signed certificate (private key 0600 in its home)"
tentacle new-certificate --instance worker
tentacle new-certificate --instance caller
tentacle show-thumbprint --instance worker
tentacle show-thumbprint --instance caller

step "They trust each other by exchanging public certificates"
tentacle export-certificate --instance worker --file "$workdir/worker.pem"
tentacle export-certificate --instance caller --file "$workdir/caller.pem"
tentacle configure --instance worker --trust-certificate "$workdir/caller.pem"
tentacle configure --instance caller --trust-certificate "$workdir/worker.pem"
tentacle show-configuration --instance worker

step "The worker listens (on loopback, any free port) and the caller calls it"
tentacle configure --instance worker --listenIpAddress 127.0.0.1 --port 0
coproc AGENT { exec tentacle agent --instance worker 2>"$workdir/agent.log"; }
agent_pid=$AGENT_PID
pids+=("$agent_pid")
read -r ready <&"${AGENT[0]}"   # blocks until the agent prints its readiness line
echo "$ready"
endpoint="https://${ready#*wss://}"
worker_thumbprint=$(tentacle show-thumbprint --instance worker --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["Thumbprint"])')
call() { tentacle client --instance caller "$1" --endpoint "$endpoint" --thumbprint "$worker_thumbprint" "${@:2}"; }

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
# the agent tells its scripts where its home and its applications folder are, and
# which tentacle to call (as root, scripts run as uids that may not reach the PATH's)
"$TentacleExecutablePath" calamari deploy-package --package "$TentacleHome/Files/Acme.Web.1.0.0.zip" \
    --variables "$TentacleHome/Files/variables.json"
cat "$TentacleApplications"/Acme.Web/1.0.0/config/app.conf "$TentacleApplications"/Acme.Web/1.0.0/config/appsettings.json
SCRIPT
call run-script "$workdir/deploy.sh" | tee "$workdir/deploy.out"
grep -q "listen = 8080" "$workdir/deploy.out" && echo "Deployed and configured"

step "The agent stops cleanly on SIGTERM"
kill -TERM "$agent_pid"
wait "$agent_pid"
cat "$workdir/agent.log"

step "A hub: the server workers register with (its certificate, its database, the defaults)"
hub_home="$workdir/hub"
tentacle hub create --home "$hub_home"
api_key=$(tentacle hub create-api-key --home "$hub_home" --name demo)
echo "An API key for the demo: ${api_key:0:8}... (shown once; the hub keeps only its hash)"
hub_thumbprint=$(tentacle hub show-thumbprint --home "$hub_home" --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["Thumbprint"])')

# start NAME READY COMMAND...: run COMMAND in the background with its stdout in a
# FIFO, and return once it printed a line starting with READY; the lines so far
# are in $workdir/NAME.ready, its pid in $started_pid. Fails if it exits first.
start() {
    local name=$1 expect=$2 line fd
    shift 2
    mkfifo "$workdir/$name.fifo"
    "$@" >"$workdir/$name.fifo" 2>"$workdir/$name.log" &
    started_pid=$!
    pids+=("$started_pid")
    exec {fd}<"$workdir/$name.fifo"
    while IFS= read -r line <&"$fd"; do
        echo "$line" | tee -a "$workdir/$name.ready"
        case "$line" in "$expect"*)
            cat <&"$fd" >"$workdir/$name.out" &  # drain the rest: it never blocks on stdout
            exec {fd}<&-
            return 0 ;;
        esac
    done
    echo "$name exited before printing '$expect':" >&2
    cat "$workdir/$name.log" >&2
    return 1
}

step "The hub serves its REST API over HTTPS (pinned by thumbprint), on free loopback ports"
start hub "Hub polling port:" tentacle hub serve --home "$hub_home" --listen 127.0.0.1:0 --polling-port 0
hub_pid=$started_pid
hub_url=$(sed -n 's/^Hub listening on: //p' "$workdir/hub.ready")
polling_port=$(sed -n 's/^Hub polling port: //p' "$workdir/hub.ready")
# what register-worker and the commands for people read (the same for tentacle hub ...)
export TENTACLE_SERVER_URL=$hub_url TENTACLE_API_KEY=$api_key TENTACLE_SERVER_THUMBPRINT=$hub_thumbprint

# The hub's commands for people (the same environment as register-worker)
hub_health_check() { tentacle hub health-check --pool "$1"; }
hub_workers() { tentacle hub workers; }

step "Two new agents: one listening (the hub dials it), one polling (it dials the hub)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
listening_port=$(free_port)
tentacle create-instance --instance listening
tentacle new-certificate --instance listening
tentacle configure --instance listening --listenIpAddress 127.0.0.1 --port "$listening_port"
tentacle create-instance --instance polling
tentacle new-certificate --instance polling

step "Both register into the Default Worker Pool (certificates exchanged both ways)"
tentacle register-worker --instance listening --workerpool "Default Worker Pool" \
    --name demo-listening --publicHostName 127.0.0.1 --tentacle-comms-port "$listening_port"
tentacle register-worker --instance polling --workerpool "Default Worker Pool" \
    --name demo-polling --comms-style TentacleActive --server-comms-port "$polling_port"
tentacle configure --instance polling --noListen true  # it only polls
hub_workers

step "Both agents start; the hub health-checks the pool (a server task, followed live)"
start listening "Agent listening on:" tentacle agent --instance listening
listening_pid=$started_pid
start polling "Agent will not listen" tentacle agent --instance polling
polling_pid=$started_pid
hub_health_check "Default Worker Pool"

step "The workers, both Healthy"
hub_workers

step "A script task on every worker of the pool, two at a time, followed live (each line names its worker)"
cat > "$workdir/inventory.sh" <<'SCRIPT'
echo "Hello $1 from $(hostname): agent home $TentacleHome"
echo "free space here: $(df -h . | awk 'NR == 2 {print $4}')"
SCRIPT
tentacle hub run --pool "Default Worker Pool" --all-workers --max-parallelism 2 \
    "$workdir/inventory.sh" -- "demo user"
tentacle hub tasks --take 3

step "A deployment through the hub: the package into its repository, then to both workers"
mkdir -p "$workdir/hubpkg/config"
cat > "$workdir/hubpkg/config/app.conf" <<'CONF'
# rendered by tentacle calamari on #{Octopus.Machine.Name}
listen = #{Web.Port}
#{each server in Servers}upstream #{server}
#{/each}
CONF
cat > "$workdir/hubpkg/Deploy.sh" <<'SCRIPT'
echo "installing #{Octopus.Action.Package.PackageId} #{Octopus.Action.Package.PackageVersion} into $PWD"
cat config/app.conf
set_octopusvariable ListenPort "#{Web.Port}"
set_octopusvariable InstalledTo "$PWD"
SCRIPT
(cd "$workdir/hubpkg" && python3 -m zipfile -c "$workdir/Acme.Shop.1.0.0.zip" config Deploy.sh)
cat > "$workdir/hub-variables.json" <<'JSON'
[
  {"name": "Web.Port", "value": "8080"},
  {"name": "Servers", "value": "10.0.0.1:80,10.0.0.2:80"},
  {"name": "Database.Password", "value": "correct horse", "sensitive": true},
  {"name": "Octopus.Action.SubstituteInFiles.TargetFiles", "value": "config/*.conf"}
]
JSON
tentacle hub deploy --pool "Default Worker Pool" --all-workers \
    --package "$workdir/Acme.Shop.1.0.0.zip" --variables "$workdir/hub-variables.json" \
    | tee "$workdir/hub-deploy.out"
grep -q "ListenPort = 8080" "$workdir/hub-deploy.out" && echo "Deployed to both workers through the hub"
if grep -q "correct horse" "$workdir/hub-deploy.out"; then echo "a sensitive value was shown" >&2; exit 1; fi

step "Deployed again to one worker: the hub holds the package already, the worker has it in its cache"
tentacle hub deploy --pool "Default Worker Pool" --worker demo-listening \
    --package "$workdir/Acme.Shop.1.0.0.zip" --variables "$workdir/hub-variables.json"

step "The hub's web page: workers, pools, tasks and their live logs, in a browser"
echo "Web page: ${hub_url%/}/app/"
echo "Sign in with the API key: $api_key"
echo "(the hub's certificate is its own, not a CA's: the browser asks you to accept it; its thumbprint is $hub_thumbprint)"
if [ "${DEMO_KEEP:-}" = 1 ]; then
    echo "DEMO_KEEP=1: the hub and both workers keep running; press Ctrl-C to stop them"
    interrupted=
    trap 'interrupted=yes' INT
    while [ -z "$interrupted" ] && kill -0 "$hub_pid" 2>/dev/null; do wait "$hub_pid" || true; done
    trap - INT
    [ -n "$interrupted" ] || { echo "the hub stopped by itself: see $workdir/hub.log" >&2; cat "$workdir/hub.log" >&2; exit 1; }
else
    echo "(run it with DEMO_KEEP=1 to keep the hub running until Ctrl-C, and open the page)"
fi

step "Everything stops cleanly on SIGTERM"
for pid in "$listening_pid" "$polling_pid" "$hub_pid"; do
    kill -TERM "$pid" 2>/dev/null || true
    # a Ctrl-C at a terminal reached them too (DEMO_KEEP=1): they stopped on it, each with its own exit code
    wait "$pid" || [ -n "${interrupted:-}" ]
done
grep -h -E "stopped" "$workdir/listening.log" "$workdir/polling.log" "$workdir/hub.log" || true

step "Done"
