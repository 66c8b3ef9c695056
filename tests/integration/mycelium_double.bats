#!/usr/bin/env bats
# The Mycelium test double (tests/fixtures/mycelium.c, documented in
# tests/fixtures/mycelium.md): its CLI output, its key handling, its HTTP API, its TUN,
# and real packets between two instances of it over a veth.
#
# Network safety: the tests that start the daemon run only inside a private network
# namespace (tests/in-netns sets HERO_TEST_NETNS=1), and each makes two more namespaces
# of its own ("hosts" A and B, each held by a `sleep` this file starts) joined by one
# veth with ULA addresses (fd00:<pid>:<test>::1 and ::2) and 192.0.2.1 and .2 (TEST-NET-1).
# Peers are only those addresses (and 127.0.0.1 inside a host);
# the API listens on 127.0.0.1 inside each host. Nothing can leave the machine: the
# namespaces have no other interface.

bats_require_minimum_version 1.5.0
load hosts

setup() {
  MYC=${MYCELIUM_DOUBLE:-$BATS_TEST_DIRNAME/../../build/fixtures/mycelium}
  MYC=$(cd "$(dirname "$MYC")" && pwd)/$(basename "$MYC")
  [ -x "$MYC" ] || { echo "$MYC missing: run make build/fixtures/mycelium" >&2; return 1; }
  T=$(mktemp -d /tmp/myc-double.XXXXXX)
  HOLD_A="" HOLD_B="" DAEMON_A="" DAEMON_B=""
  N=$$
  # a ULA /64 and veth names of this test's own: fd00:<pid in hex>:<test number>::/64
  ULA="fd00:$(printf '%x' $((N % 65536))):$BATS_TEST_NUMBER::"
  VA="md${BATS_TEST_NUMBER}a$N" VB="md${BATS_TEST_NUMBER}b$N"
  VA=${VA:0:15} VB=${VB:0:15}
}

teardown() {
  local p
  # the daemons first (politely, then not), then the namespace holders: the namespaces,
  # their veth ends and the TUNs go away with the last process in them
  for p in $DAEMON_A $DAEMON_B; do
    kill -TERM "$p" 2> /dev/null || true
  done
  for p in $DAEMON_A $DAEMON_B; do
    timeout 5 tail --pid="$p" -f /dev/null 2> /dev/null || kill -KILL "$p" 2> /dev/null || true
  done
  for p in $HOLD_A $HOLD_B; do
    kill -KILL "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
  done
  ip link del "$VA" 2> /dev/null || true
  [ -z "${T:-}" ] || rm -rf "$T"
}

need_netns() {
  [ "$(id -u)" -eq 0 ] || skip "needs root: namespaces, veths and TUNs"
  [ "${HERO_TEST_NETNS:-}" = 1 ] ||
    skip "makes namespaces and TUNs: run it in a private network namespace (tests/in-netns bats ...; tests/run does)"
  command -v nsenter > /dev/null || skip "needs nsenter (util-linux)"
  command -v curl > /dev/null || skip "needs curl"
  [ -c /dev/net/tun ] || skip "needs /dev/net/tun"
}

# the RFC 7748 test vector: Alice's x25519 secret and public key
ALICE_SK=77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a
ALICE_PK=8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a

# write_key FILE HEX: a raw 32-byte key file
write_key() {
  printf '%s' "$2" | sed 's/../\\x&/g' | xargs -0 printf > "$1"
  [ "$(stat -c %s "$1")" -eq 32 ]
}

# daemon NAME ARGS...: the double in that host, logs in $T/NAME.log; sets DAEMON_<NAME>
# and waits until its API answers (the TUN exists before the API listens)
daemon() {
  local h=$1 pid i
  shift
  eval "pid=\$HOLD_$h"
  nsenter --net="/proc/$pid/ns/net" -- "$MYC" "$@" > "$T/$h.log" 2>&1 3>&- &
  eval "DAEMON_$h=$!"
  for i in $(seq 100); do
    api "$h" GET /api/v1/admin > /dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "the double in $h did not answer; its log:" >&2
  cat "$T/$h.log" >&2
  return 1
}

# api NAME METHOD PATH [BODY]: the API of the double in that host; prints
# "STATUS" on the first line and the body after it
api() {
  local h=$1 m=$2 p=$3 out
  local args=(--noproxy '*' -s -m 5 -o "$T/body" -w '%{http_code}' -X "$m")
  [ $# -lt 4 ] || args+=(-H 'Content-Type: application/json' --data "$4")
  out=$(in_host "$h" curl "${args[@]}" "http://127.0.0.1:8989$p") || return 1
  echo "$out"
  cat "$T/body"
}

# expand6 ADDR: the 32 hex digits of an IPv6 address
expand6() {
  local a=$1 head tail out="" g n
  if [[ "$a" == *::* ]]; then head=${a%%::*} tail=${a#*::}; else head=$a tail=""; fi
  local -a h t
  IFS=: read -ra h <<< "$head"
  IFS=: read -ra t <<< "$tail"
  n=$((8 - ${#h[@]} - ${#t[@]}))
  for g in "${h[@]}"; do out+=$(printf '%04x' "0x$g"); done
  for ((g = 0; g < n; g++)); do out+=0000; done
  for g in "${t[@]}"; do out+=$(printf '%04x' "0x$g"); done
  echo "$out"
}

# wait_state NAME PATTERN: until the peer list of that host matches PATTERN (10 s)
wait_state() {
  local i out
  for i in $(seq 50); do
    out=$(api "$1" GET /api/v1/admin/peers) && grep -Eq "$2" <<< "$out" && return 0
    sleep 0.2
  done
  echo "peers of $1 never matched $2; last answer: $out" >&2
  cat "$T/$1.log" >&2
  return 1
}

@test "mycelium -V prints the 0.7.10 version line; the environment can fake another one" {
  run "$MYC" -V
  [ "$status" -eq 0 ]
  [ "$output" = "mycelium 0.7.10" ]
  run env MYCELIUM_DOUBLE_VERSION=0.6.2 "$MYC" -V
  [ "$output" = "mycelium 0.6.2" ]
  run env MYCELIUM_DOUBLE_VERSION_LINE="myceliumd 0.6.2" "$MYC" --version
  [ "$status" -eq 0 ]
  [ "$output" = "myceliumd 0.6.2" ]
}

@test "inspect --json: the x25519 public key and a stable 400::/7 address; exit 1 without a key" {
  write_key "$T/k" "$ALICE_SK"
  run --separate-stderr "$MYC" --key-file "$T/k" inspect --json
  [ "$status" -eq 0 ]
  grep -q "\"publicKey\": \"$ALICE_PK\"" <<< "$output"
  addr=$(sed -n 's/.*"address": "\([^"]*\)".*/\1/p' <<< "$output")
  # SHA-256 of the key, first byte mangled: the double's address for this key, forever
  [ "$addr" = "40c:9c96:3b9:2a4b:39ed:3958:bf92:4011" ]
  # the option after the subcommand, and a public key given on the command line
  run "$MYC" inspect --json --key-file "$T/k"
  grep -q "\"address\": \"$addr\"" <<< "$output"
  run "$MYC" inspect "$ALICE_PK"
  [ "${lines[1]}" = "Address: $addr" ]
  # every key gives an address in 400::/7
  head -c 32 /dev/urandom > "$T/r"
  run "$MYC" -k "$T/r" inspect --json
  grep -Eq '"address": "[45][0-9a-f]{2}:' <<< "$output"
  # no key file: exit 1, a message on stderr, nothing on stdout, nothing created
  run --separate-stderr "$MYC" --key-file "$T/missing" inspect --json
  [ "$status" -eq 1 ]
  [ -z "$output" ]
  grep -q "key file not found" <<< "$stderr"
  [ ! -e "$T/missing" ]
  # a malformed peer is refused like clap does
  run "$MYC" --key-file "$T/k" --peers 10.0.0.1:9651
  [ "$status" -eq 2 ]
  [[ "$output" == *"missing leading protocol identifier"* ]]
}

@test "daemon: makes its key, a TUN with the node address /7 and MTU 1400, the admin API; SIGTERM removes it" {
  need_netns
  host A
  daemon A --key-file "$T/a.key" --tun-name myctA --tcp-listen-port 9651
  # the key file was created: 32 bytes, and inspect agrees with the API
  [ "$(stat -c %s "$T/a.key")" -eq 32 ]
  run "$MYC" --key-file "$T/a.key" inspect --json
  pk=$(sed -n 's/.*"publicKey": "\([^"]*\)".*/\1/p' <<< "$output")
  addr=$(sed -n 's/.*"address": "\([^"]*\)".*/\1/p' <<< "$output")
  [[ "$addr" == [45]* ]]
  run api A GET /api/v1/admin
  [ "${lines[0]}" = 200 ]
  [[ "${lines[1]}" == *"\"nodePubkey\":\"$pk\""* ]]
  sub=$(sed -n 's/.*"nodeSubnet":"\([^"]*\)".*/\1/p' <<< "${lines[1]}")
  [[ "$sub" == *::/64 ]]
  # the subnet is the /64 of the address
  full_addr=$(expand6 "$addr")
  [ "$(expand6 "${sub%/64}")" = "${full_addr:0:16}0000000000000000" ]
  # the TUN: up, MTU 1400, the node address /7, and the kernel's route for 400::/7
  run in_host A ip -o link show myctA
  [[ "$output" == *"mtu 1400"* ]]
  [[ "$output" == *[\<,]UP[,\>]* ]]
  run in_host A ip -o -6 addr show dev myctA
  [[ "$output" == *"inet6 $addr/7 "* ]]
  run in_host A ip -6 route show dev myctA
  [[ "$output" == *"400::/7"* ]]
  # no peers yet; unknown paths are 404; a wrong method is 405
  run api A GET /api/v1/admin/peers
  [ "${lines[0]}" = 200 ]
  [ "${lines[1]}" = "[]" ]
  run api A GET /api/v1/nothing
  [ "${lines[0]}" = 404 ]
  run api A PUT /api/v1/admin
  [ "${lines[0]}" = 405 ]
  # SIGTERM: exit 0, the TUN is gone
  kill -TERM "$DAEMON_A"
  rc=0
  wait "$DAEMON_A" || rc=$?
  DAEMON_A=""
  [ "$rc" -eq 0 ]
  run in_host A ip link show myctA
  [ "$status" -ne 0 ]
  grep -q "removed TUN myctA" "$T/A.log"
}

@test "two doubles peered over a veth: alive peers, and a ping between node addresses goes through the TUNs" {
  need_netns
  two_hosts
  write_key "$T/a.key" "$ALICE_SK"
  daemon A --key-file "$T/a.key" --tun-name myctA --peers "tcp://[${ULA}2]:9651"
  daemon B --key-file "$T/b.key" --tun-name myctB
  addr_a=$("$MYC" -k "$T/a.key" inspect --json | sed -n 's/.*"address": "\([^"]*\)".*/\1/p')
  addr_b=$("$MYC" -k "$T/b.key" inspect --json | sed -n 's/.*"address": "\([^"]*\)".*/\1/p')
  [ "$addr_a" = "40c:9c96:3b9:2a4b:39ed:3958:bf92:4011" ]
  [ -n "$addr_b" ] && [ "$addr_a" != "$addr_b" ]
  # A knows B as a static peer, B learns A as an inbound one; both become alive and
  # count bytes
  wait_state A "\"endpoint\":\\{\"proto\":\"tcp\",\"socketAddr\":\"\\[${ULA}2\\]:9651\"\\},\"type\":\"static\",\"connectionState\":\"alive\",\"txBytes\":[1-9][0-9]*,\"rxBytes\":[1-9]"
  wait_state B "\"socketAddr\":\"\\[${ULA}1\\]:9651\"\\},\"type\":\"inbound\",\"connectionState\":\"alive\""
  # the ping: from A's node address to B's, through myctA, UDP over the veth, myctB
  run in_host A busybox ping -6 -c 3 -W 5 -I "$addr_a" "$addr_b"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *" 0% packet loss"* || "$output" == *"3 packets received"* ]]
  # any address of B's /64 comes out of B's TUN (what containers behind B rely on)
  sub_b=$(api B GET /api/v1/admin | sed -n 's/.*"nodeSubnet":"\([^"]*\)".*/\1/p')
  extra="${sub_b%/64}42"
  in_host B ip -6 addr add "$extra/128" dev lo
  run in_host A busybox ping -6 -c 2 -W 5 -I "$addr_a" "$extra"
  echo "$output"
  [ "$status" -eq 0 ]
  # once B is deleted from A's peers, nothing goes to it any more
  enc=$(printf 'tcp://[%s2]:9651' "$ULA" | sed 's/:/%3A/g; s,/,%2F,g; s/\[/%5B/g; s/\]/%5D/g')
  run api A DELETE "/api/v1/admin/peers/$enc"
  [ "${lines[0]}" = 204 ]
  run in_host A busybox ping -6 -c 2 -W 2 -I "$addr_a" "$addr_b"
  [ "$status" -ne 0 ]
}

@test "the peers API: POST adds (204, 409 twice, 400 malformed, 415 without JSON), DELETE removes" {
  need_netns
  two_hosts
  daemon A --key-file "$T/a.key" --tun-name myctA
  daemon B --key-file "$T/b.key" --tun-name myctB --no-tun
  # B runs without a TUN
  run in_host B ip link show myctB
  [ "$status" -ne 0 ]
  run api A POST /api/v1/admin/peers '{"endpoint":"tcp://192.0.2.2:9651"}'
  [ "${lines[0]}" = 204 ]
  run api A POST /api/v1/admin/peers '{"endpoint":"tcp://192.0.2.2:9651"}'
  [ "${lines[0]}" = 409 ]
  [[ "$output" == *"already exists"* ]]
  run api A POST /api/v1/admin/peers '{"endpoint":"10.0.0.1:9651"}'
  [ "${lines[0]}" = 400 ]
  run api A POST /api/v1/admin/peers '{"endpoint":"tcp://not-an-address:9651"}'
  [ "${lines[0]}" = 400 ]
  run api A POST /api/v1/admin/peers '{"nope":1}'
  [ "${lines[0]}" = 422 ]
  run in_host A curl --noproxy '*' -s -m 5 -o /dev/null -w '%{http_code}' \
    --data '{"endpoint":"tcp://[fd00::9]:9651"}' http://127.0.0.1:8989/api/v1/admin/peers
  [ "$output" = 415 ]
  # an IPv4 endpoint is listed in Rust's SocketAddr form (it never answers: connecting)
  run api A POST /api/v1/admin/peers '{"endpoint":"quic://127.0.0.1:9"}'
  [ "${lines[0]}" = 204 ]
  run api A GET /api/v1/admin/peers
  [[ "$output" == *'{"endpoint":{"proto":"quic","socketAddr":"127.0.0.1:9"},"type":"static","connectionState":"connecting","txBytes":'* ]]
  # the added peer becomes alive (over IPv4: the UDP socket is dual-stack), and B lists
  # A as inbound, in IPv4 form
  wait_state A '"socketAddr":"192\.0\.2\.2:9651"\},"type":"static","connectionState":"alive"'
  wait_state B '"socketAddr":"192\.0\.2\.1:9651"\},"type":"inbound","connectionState":"alive"'
  # the same peer over IPv6 is another peer
  run api A POST /api/v1/admin/peers "{\"endpoint\":\"tcp://[${ULA}2]:9651\"}"
  [ "${lines[0]}" = 204 ]
  # DELETE takes the URL-encoded endpoint; a second time it is 404, garbage is 400
  run api A DELETE /api/v1/admin/peers/quic%3A%2F%2F127.0.0.1%3A9
  [ "${lines[0]}" = 204 ]
  run api A DELETE /api/v1/admin/peers/quic%3A%2F%2F127.0.0.1%3A9
  [ "${lines[0]}" = 404 ]
  run api A DELETE /api/v1/admin/peers/garbage
  [ "${lines[0]}" = 400 ]
  run api A GET /api/v1/admin/peers
  [[ "$output" != *"127.0.0.1:9"* ]]
  # a keep-alive client (curl, two requests on one connection) gets both answers
  run --separate-stderr in_host A curl --noproxy '*' -sv -m 5 http://127.0.0.1:8989/api/v1/admin \
    http://127.0.0.1:8989/api/v1/admin/peers
  [ "$status" -eq 0 ]
  [[ "$output" == *'"nodeSubnet"'*'"endpoint"'* ]]
  grep -q "Re-using existing connection" <<< "$stderr"
}
