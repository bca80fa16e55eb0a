#!/bin/bash
# zfw demo lab: two network namespaces joined by veth, zfw on the server
# side, one connection that zfw allows and one that it blocks, a JSON
# status, and a clean teardown (also on Ctrl-C or failure).
set -euo pipefail
cd "$(dirname "$0")/.."
ZFW=${ZFW:-./target/release/zfw}
CLI=zfw-demo-client
SRV=zfw-demo-server
ROOT=/sys/fs/bpf/zfw-demo
PIDS=()

in_srv() { nsenter --net=/run/netns/$SRV "$@"; }
in_cli() { nsenter --net=/run/netns/$CLI "$@"; }

cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ -d $ROOT ] && in_srv $ZFW --bpffs $ROOT unload --all >/dev/null 2>&1
    ip netns del $CLI 2>/dev/null
    ip netns del $SRV 2>/dev/null
}
trap cleanup EXIT
cleanup

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "lab: $CLI (10.88.0.1) <-veth-> $SRV (10.88.0.2)"
ip netns add $CLI
ip netns add $SRV
ip link add dcli netns $CLI type veth peer name dsrv netns $SRV
ip -n $CLI addr add 10.88.0.1/24 dev dcli
ip -n $SRV addr add 10.88.0.2/24 dev dsrv
for ns in $CLI $SRV; do ip -n $ns link set lo up; done
ip -n $CLI link set dcli up
ip -n $SRV link set dsrv up

step "server listens on tcp/22 (ssh stand-in) and tcp/8080"
for port in 22 8080; do
    # nsenter execs nc, so $! is the listener itself (a function would fork)
    nsenter --net=/run/netns/$SRV nc -lk 10.88.0.2 $port </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
done
sleep 0.3

try() {
    if in_cli nc -z -w 1 10.88.0.2 "$1"; then echo "client -> 10.88.0.2:$1  CONNECTED"
    else echo "client -> 10.88.0.2:$1  BLOCKED"; fi
}
step "before zfw"
try 22; try 8080

step "zfw load --iface dsrv"
in_srv $ZFW --bpffs $ROOT load --iface dsrv

step "with zfw (default deny; SSH to the interface address allowed)"
try 22; try 8080

step "zfw rule add --dst 10.88.0.2/32 --proto tcp --ports 8080 (now 8080 is allowed too)"
in_srv $ZFW --bpffs $ROOT rule add --dst 10.88.0.2/32 --proto tcp --ports 8080 --service-id demo-web
in_srv $ZFW --bpffs $ROOT rule list
try 22; try 8080

step "zfw conntrack list"
in_srv $ZFW --bpffs $ROOT conntrack list

step "zfw status --json"
in_srv $ZFW --bpffs $ROOT status --json

step "teardown"
in_srv $ZFW --bpffs $ROOT unload --all
