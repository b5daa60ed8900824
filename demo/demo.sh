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

step "Done"
