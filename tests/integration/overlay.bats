#!/usr/bin/env bats
# The IPv6 overlay: enable_mycelium (against the Mycelium test double,
# tests/fixtures/mycelium.md) and enable_yggdrasil (against Debian's real yggdrasil),
# with containers on real crun, as root.
#
# Network safety: these tests run only inside a private network namespace (tests/run
# runs the suite through tests/in-netns; the setup below skips otherwise). Each test
# makes two more namespaces of its own, "hosts" A and B (each held by a `sleep` this
# file starts), joined by one veth with ULA addresses fd00:<pid>:<test>::1 and ::2.
# Peers are only those addresses; APIs and admin sockets are on 127.0.0.1 or in the
# test's directory; yggdrasil's multicast discovery is off. Each host runs hero with
# a base dir of its own through `nsenter --net` (never `ip netns exec`, which remounts
# /sys and hides the cgroup mounts from crun). Nothing can leave the machine: the
# namespaces have no other interface, and dns_servers is 127.0.0.1.

bats_require_minimum_version 1.5.0
load hosts

setup() {
  [ "$(id -u)" -eq 0 ] || skip "needs root: namespaces, veths, TUNs and containers"
  CRUN=$(command -v crun) || skip "needs crun (Debian package crun)"
  [ "${HERO_TEST_NETNS:-}" = 1 ] ||
    skip "makes namespaces and TUNs: run it in a private network namespace (tests/in-netns bats ...; tests/run does)"
  command -v nsenter > /dev/null || skip "needs nsenter (util-linux)"
  command -v sqlite3 > /dev/null || skip "needs sqlite3 (make deps) to read the leases"
  [ -c /dev/net/tun ] || skip "needs /dev/net/tun"
  if [ -s /sys/fs/cgroup/unified/cgroup.controllers ]; then
    skip "crun refuses this machine's hybrid cgroups: make cgroup-fix"
  fi
  HERO=${HERO:-$BATS_TEST_DIRNAME/../../build/hero}
  HERO=$(cd "$(dirname "$HERO")" && pwd)/$(basename "$HERO")
  [ -x "$HERO" ] || { echo "$HERO missing: run make" >&2; return 1; }
  FIX=$(cd "$BATS_TEST_DIRNAME/../../build/fixtures" 2> /dev/null && pwd) || FIX=""
  [ -x "$FIX/mycelium" ] || { echo "build/fixtures/mycelium missing: run make unit" >&2; return 1; }
  T=$(mktemp -d /tmp/hero-overlay.XXXXXX)
  N=$BATS_TEST_NUMBER
  ULA="fd00:$(printf '%x' $(($$ % 65536))):$N::"
  VA="ho${N}a$$" VB="ho${N}b$$"
  VA=${VA:0:15} VB=${VB:0:15}
  HOLD_A="" HOLD_B="" DAEMONS=""
  # the double is `mycelium` for hero
  export PATH="$FIX:$PATH"
}

teardown() {
  [ -n "${T:-}" ] || return 0
  local h p pid
  for h in A B; do
    eval "pid=\${HOLD_$h:-}"
    [ -n "$pid" ] || continue
    # hero's own way out first: reset removes the containers and stops the daemon
    # hero started
    if [ -f "$T/$h/hero.db" ]; then
      hdr "$h" "reset:true" > "$T/$h-reset.hs"
      in_host "$h" "$HERO" run "$T/$h-reset.hs" > /dev/null 2>&1 || true
    fi
    if [ -d "$T/$h/crun" ]; then
      for p in $("$CRUN" --root "$T/$h/crun" list -q 2> /dev/null); do
        "$CRUN" --root "$T/$h/crun" delete -f "$p" > /dev/null 2>&1 || true
      done
    fi
    # whatever still runs in this test's own namespace was started by this test
    for p in $(ns_pids "$pid"); do
      [ "$p" = "$pid" ] || kill -KILL "$p" 2> /dev/null || true
    done
  done
  # a second base dir on host A (one test makes it): its containers by crun
  if [ -d "$T/A2/crun" ]; then
    for p in $("$CRUN" --root "$T/A2/crun" list -q 2> /dev/null); do
      "$CRUN" --root "$T/A2/crun" delete -f "$p" > /dev/null 2>&1 || true
    done
  fi
  for p in $DAEMONS; do
    kill -KILL "$p" 2> /dev/null || true
  done
  for p in $(awk -v b="$T" 'index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount -l "$p" 2> /dev/null || true
  done
  for h in A B; do
    eval "pid=\${HOLD_$h:-}"
    [ -z "$pid" ] || { kill -KILL "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; }
  done
  ip link del "$VA" 2> /dev/null || true
  rm -rf "$T"
}

# ns_pids HOLDPID: the processes in the network namespace of HOLDPID
ns_pids() {
  local ns p
  ns=$(readlink "/proc/$1/ns/net") || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2> /dev/null)" = "$ns" ] && echo "${p#/proc/}"
  done
  return 0
}

# hdr HOST [EXTRA...]: the configure line of that host's instance
hdr() {
  local h=$1 o=1
  shift
  [ "$h" = A ] || o=2
  echo "!!heropods.configure name:'ov$N$h' base_dir:'$T/$h' bridge_name:'ho${N}br$h' subnet:'10.$((170 + N)).$o.0/24' dns_servers:['127.0.0.1'] $*"
}

# pb HOST NAME: writes $T/HOST-NAME.hs: the host's configure line, then stdin
pb() {
  { hdr "$1"; cat; } > "$T/$1-$2.hs"
}

# hrun HOST NAME: runs $T/HOST-NAME.hs with hero in that host
hrun() {
  run --separate-stderr in_host "$1" "$HERO" run "$T/$1-$2.hs"
  echo "# hero run $1-$2.hs: status $status" >&2
  [ -z "$output" ] || printf '# stdout: %s\n' "${lines[@]}" >&2
  [ -z "$stderr" ] || printf '# stderr: %s\n' "${stderr_lines[@]}" >&2
}

# pods HOST ARGS...: hero pods in that host with its base dir
pods() {
  local h=$1
  shift
  in_host "$h" "$HERO" pods --base-dir "$T/$h" "$@"
}

# ovaddr HOST CTR: the container's overlay address, from hero pods inspect
ovaddr() {
  pods "$1" inspect --json "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["overlay"] or "")'
}

# node_pid HOST: the pid of the daemon hero recorded for the host's instance
daemon_pid() {
  sqlite3 "$T/$1/hero.db" "SELECT json_extract(value, '\$.daemon.pid') FROM meta WHERE key='overlay.ov$N$1'"
}

# fetch HOST CTR ADDR: the body of http://[ADDR]:8080/ as fetched inside CTR, retried
# for up to 10 s (the overlay's peering takes a moment); each try is cut at 3 s
fetch() {
  pods "$1" exec "$2" -- sh -c "for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -q -O - 'http://[$3]:8080/' && exit 0; sleep 1; done; exit 1"
}

# server HOST NAME: a container that serves its own name on port 8080 (all addresses)
server_lines() {
  cat <<EOF
!!heropods.container_new name:'$1' image:'embedded'
!!heropods.container_start name:'$1' keep_alive:true
!!heropods.container_exec name:'$1' cmd:'mkdir -p /tmp/w && hostname > /tmp/w/index.html && httpd -p [::]:8080 -h /tmp/w'
EOF
}

client_lines() {
  cat <<EOF
!!heropods.container_new name:'$1' image:'embedded'
!!heropods.container_start name:'$1' keep_alive:true
EOF
}

mycelium_line() {
  # $1: the peer; $2...: more parameters
  local peer=$1
  shift
  echo "!!heropods.enable_mycelium version:'0.7.0' ipv6_range:'400::/7' key_path:'$T/key-$HOST_NOW' peers:['$peer'] $*"
}

# mycelium_pair SERVER...: keys and the playbooks A-up.hs (the double peered with B,
# then the servers) and B-up.hs (the double peered with A, then a client `cli`)
mycelium_pair() {
  local c
  HOST_NOW=A
  { mycelium_line "tcp://[${ULA}2]:9651"; for c in "$@"; do server_lines "$c"; done; } | pb A up
  HOST_NOW=B
  { mycelium_line "tcp://[${ULA}1]:9651"; client_lines cli; } | pb B up
  head -c 32 /dev/urandom > "$T/key-A"
  head -c 32 /dev/urandom > "$T/key-B"
}

@test "mycelium (double): a container on host B fetches from a container on host A over the overlay" {
  two_hosts
  # host A forwards IPv6 the way docker leaves it: ip6 filter FORWARD, policy drop
  in_host A nft add table ip6 filter
  in_host A nft add chain ip6 filter FORWARD '{ type filter hook forward priority filter; policy drop; }'

  mycelium_pair srv
  hrun A up
  [ "$status" -eq 0 ]
  [[ "$output" == *"mycelium: node 4"* || "$output" == *"mycelium: node 5"* ]]
  [[ "$output" == *"started the daemon"* ]]
  hrun B up
  [ "$status" -eq 0 ]
  a=$(ovaddr A srv)
  b=$(ovaddr B cli)
  echo "# srv $a, cli $b" >&2
  # each in its own node's /64 (4xx/5xx: mycelium's 400::/7)
  [[ "$a" == [45]* ]] && [[ "$b" == [45]* ]]
  na=$(sqlite3 "$T/A/hero.db" "SELECT json_extract(value, '\$.subnet') FROM meta WHERE key='overlay.ov${N}A'")
  [ "${a%:*}" != "${b%:*}" ]
  # in the node's /64, the first host number of the store's own range (::T:T:0:2)
  python3 -c 'import ipaddress as i, sys; a = i.ip_address(sys.argv[1]); assert a in i.ip_network(sys.argv[2]) and int(a) & 0xffffffff == 2, sys.argv' "$a" "$na"
  run fetch B cli "$a"
  echo "# fetch: $output" >&2
  [ "$status" -eq 0 ]
  [ "$output" = srv ]
  # through the drop policy thanks to hero's rules, tagged; without them, nothing passes
  run in_host A nft -a list chain ip6 filter FORWARD
  [ "$(grep -c 'comment "hero:overlay"' <<< "$output")" -eq 4 ]
  for h in $(grep 'comment "hero:overlay"' <<< "$output" | sed 's/.*# handle //'); do
    in_host A nft delete rule ip6 filter FORWARD handle "$h"
  done
  run pods B exec cli -- timeout 3 wget -q -O - "http://[$a]:8080/"
  [ "$status" -ne 0 ]
  # a rerun of enable_mycelium puts them back
  HOST_NOW=A
  mycelium_line "tcp://[${ULA}2]:9651" | pb A enable
  hrun A enable
  [ "$status" -eq 0 ]
  run in_host A nft list chain ip6 filter FORWARD
  [ "$(grep -c 'comment "hero:overlay"' <<< "$output")" -eq 4 ]
  run fetch B cli "$a"
  [ "$status" -eq 0 ] && [ "$output" = srv ]
  # the route in the container and the host end
  run pods A exec srv -- ip -6 route
  [[ "$output" == *"400::/7 via fe80::1"* ]]
  run in_host A ip -6 route show "$a"
  [[ "$output" == *"dev vmyh-"* ]]
  # hero pods overlay shows the node and its peer, alive
  run pods B overlay
  echo "$output" >&2
  [ "$status" -eq 0 ]
  [[ "$output" == *"mycelium"* ]]
  [[ "$output" == *"tcp://[${ULA}1]:9651"*alive* ]]
}

@test "mycelium (double): two containers get distinct, stable addresses; deleting one leaves the other reachable" {
  two_hosts
  mycelium_pair s1 s2
  hrun A up
  [ "$status" -eq 0 ]
  hrun B up
  [ "$status" -eq 0 ]
  a1=$(ovaddr A s1)
  a2=$(ovaddr A s2)
  echo "# s1 $a1, s2 $a2" >&2
  [ -n "$a1" ] && [ -n "$a2" ] && [ "$a1" != "$a2" ]
  # neither is the node's own address (the TUN's)
  node=$(in_host A ip -6 -o addr show dev mycelium scope global | awk '{ print $4 }')
  [ "${node%/7}" != "$a1" ] && [ "${node%/7}" != "$a2" ]
  # stop and start: the same address
  pb A restart <<EOF
!!heropods.container_stop name:'s1'
!!heropods.container_start name:'s1' keep_alive:true
!!heropods.container_exec name:'s1' cmd:'httpd -p [::]:8080 -h /tmp/w'
EOF
  hrun A restart
  [ "$status" -eq 0 ]
  [ "$(ovaddr A s1)" = "$a1" ]
  run fetch B cli "$a1"
  [ "$status" -eq 0 ] && [ "$output" = s1 ]
  run fetch B cli "$a2"
  [ "$status" -eq 0 ] && [ "$output" = s2 ]
  # delete s1: its link, route and lease go; s2 stays reachable
  link1=$(pods A inspect --json s1 | python3 -c 'import json,sys; print(" ".join(o["ref"] for o in json.load(sys.stdin)[0]["host_objects"] if o["ref"].startswith("vmyh-")))')
  [ -n "$link1" ]
  printf "!!heropods.container_delete name:'s1'\n" | pb A del
  hrun A del
  [ "$status" -eq 0 ]
  run in_host A ip link show "$link1"
  [ "$status" -ne 0 ]
  run in_host A ip -6 route show "$a1"
  [ -z "$output" ]
  [ "$(sqlite3 "$T/A/hero.db" 'SELECT count(*) FROM overlay_leases')" -eq 1 ]
  run fetch B cli "$a2"
  [ "$status" -eq 0 ] && [ "$output" = s2 ]
  run pods B exec cli -- timeout 3 wget -q -O - "http://[$a1]:8080/"
  [ "$status" -ne 0 ]
}

@test "mycelium (double): two base dirs using one node: their containers get distinct addresses, both reachable" {
  two_hosts
  mycelium_pair s1
  hrun A up
  [ "$status" -eq 0 ]
  hrun B up
  [ "$status" -eq 0 ]
  # a second instance on host A, in a base dir (a store) of its own: it finds the
  # daemon the first one started and uses its node
  HOST_NOW=A
  { echo "!!heropods.configure name:'ov${N}C' base_dir:'$T/A2' bridge_name:'ho${N}brC' subnet:'10.$((170 + N)).3.0/24' dns_servers:['127.0.0.1']"
    mycelium_line "tcp://[${ULA}2]:9651"; server_lines s9; } > "$T/A-second.hs"
  hrun A second
  [ "$status" -eq 0 ]
  [[ "$output" == *"(the daemon at 127.0.0.1:8989)"* ]]
  a1=$(ovaddr A s1)
  a9=$(in_host A "$HERO" pods --base-dir "$T/A2" inspect --json s9 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["overlay"] or "")')
  echo "# s1 $a1 (base dir A), s9 $a9 (base dir A2)" >&2
  # both in the node's /64, each container id 1 of its store, and not one address
  [ -n "$a1" ] && [ -n "$a9" ] && [ "$a1" != "$a9" ]
  python3 -c 'import ipaddress as i, sys; assert i.ip_network(sys.argv[1] + "/64", False) == i.ip_network(sys.argv[2] + "/64", False), sys.argv' "$a1" "$a9"
  run fetch B cli "$a1"
  [ "$status" -eq 0 ] && [ "$output" = s1 ]
  run fetch B cli "$a9"
  [ "$status" -eq 0 ] && [ "$output" = s9 ]
}

@test "mycelium (double): a running daemon is used, and missing peers are added through its API" {
  host A
  head -c 32 /dev/urandom > "$T/key-A"
  in_host A "$FIX/mycelium" --key-file "$T/key-A" > "$T/own-daemon.log" 2>&1 3>&- &
  DAEMONS="$!"
  for i in $(seq 100); do
    in_host A curl --noproxy '*' -sf http://127.0.0.1:8989/api/v1/admin > /dev/null && break
    sleep 0.05
  done
  HOST_NOW=A
  { mycelium_line "tcp://[fd00::99]:9651"; client_lines c; } | pb A up
  hrun A up
  [ "$status" -eq 0 ]
  [[ "$output" == *"(the daemon at 127.0.0.1:8989)"* ]]
  [ -z "$(daemon_pid A)" ]
  run in_host A curl --noproxy '*' -s http://127.0.0.1:8989/api/v1/admin/peers
  [[ "$output" == *'"socketAddr":"[fd00::99]:9651"'* ]]
  # one daemon only: the test's
  [ "$(pgrep -c -f "mycelium --key-file $T/key-A")" -eq 1 ]
  # a rerun converges: the peer is there already
  hrun A up
  [ "$status" -eq 0 ]
  run pods A overlay --json
  [ "$(echo "$output" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)[0]["peers"]))')" -eq 1 ]
  [ -n "$(ovaddr A c)" ]
}

@test "mycelium (double): configure reset:true stops the daemon hero started and forgets the overlay" {
  host A
  head -c 32 /dev/urandom > "$T/key-A"
  HOST_NOW=A
  { mycelium_line "tcp://[fd00::99]:9651"; client_lines c; } | pb A up
  hrun A up
  [ "$status" -eq 0 ]
  pid=$(daemon_pid A)
  [ -n "$pid" ] && kill -0 "$pid"
  in_host A ip link show mycelium
  hdr A reset:true > "$T/A-reset.hs"
  run in_host A "$HERO" run "$T/A-reset.hs"
  [ "$status" -eq 0 ]
  for i in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  run kill -0 "$pid"
  [ "$status" -ne 0 ]
  run in_host A ip link show mycelium
  [ "$status" -ne 0 ]
  run pods A overlay
  [[ "$output" == *"no instance has an overlay"* ]]
}

@test "mycelium (double): a reset leaves the daemon to another instance of the store that uses it" {
  host A
  head -c 32 /dev/urandom > "$T/key-A"
  HOST_NOW=A
  mycelium_line "tcp://[fd00::99]:9651" | pb A up
  hrun A up
  [ "$status" -eq 0 ]
  pid=$(daemon_pid A)
  [ -n "$pid" ] && kill -0 "$pid"
  # a second instance in the same base dir finds that daemon answering, and uses it
  local second="!!heropods.configure name:'ov${N}A2' base_dir:'$T/A' bridge_name:'ho${N}brA2' subnet:'10.$((170 + N)).9.0/24' dns_servers:['127.0.0.1']"
  { echo "$second"; mycelium_line "tcp://[fd00::99]:9651"; } > "$T/A-up2.hs"
  run in_host A "$HERO" run "$T/A-up2.hs"
  [ "$status" -eq 0 ]
  # the first one's reset: the daemon goes on, now recorded with the second one
  hdr A reset:true > "$T/A-reset.hs"
  run in_host A "$HERO" run "$T/A-reset.hs"
  [ "$status" -eq 0 ]
  sleep 0.2
  # running, not a zombie that the reset's SIGTERM left to be reaped
  local state
  state=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ]
  [ "$(sqlite3 "$T/A/hero.db" "SELECT json_extract(value, '\$.daemon.pid') FROM meta WHERE key='overlay.ov${N}A2'")" = "$pid" ]
  # the second one's reset stops it
  echo "$second reset:true" > "$T/A-reset2.hs"
  run in_host A "$HERO" run "$T/A-reset2.hs"
  [ "$status" -eq 0 ]
  for i in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  run kill -0 "$pid"
  [ "$status" -ne 0 ]
  in_host A ip link del "ho${N}brA2" 2> /dev/null || true
}

@test "mycelium (double): reset kills a daemon that ignores SIGTERM, after 3 s" {
  host A
  head -c 32 /dev/urandom > "$T/key-A"
  HOST_NOW=A
  mycelium_line "tcp://[fd00::99]:9651" | pb A up
  MYCELIUM_DOUBLE_IGNORE_TERM=1 hrun A up
  [ "$status" -eq 0 ]
  pid=$(daemon_pid A)
  [ -n "$pid" ] && kill -0 "$pid"
  hdr A reset:true > "$T/A-reset.hs"
  local t0 t1
  t0=$(date +%s%N)
  run --separate-stderr in_host A "$HERO" run "$T/A-reset.hs"
  t1=$(date +%s%N)
  [ "$status" -eq 0 ] || { printf '%s\n' "${stderr_lines[@]}" >&2; false; }
  # SIGTERM was ignored: hero waited its 3 s, then sent SIGKILL
  [ $(( (t1 - t0) / 1000000 )) -ge 2900 ]
  # (killed, it may be a zombie for a moment, until init reaps it)
  for i in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  run kill -0 "$pid"
  [ "$status" -ne 0 ]
  grep -q "ignoring it" "$T/A/overlay/mycelium.log"
  run pods A overlay
  [[ "$output" == *"no instance has an overlay"* ]]
}

@test "yggdrasil (real daemon): a container on host B fetches from a container on host A" {
  command -v yggdrasil > /dev/null || skip "needs yggdrasil (Debian package yggdrasil; make deps)"
  two_hosts
  { echo "!!heropods.enable_yggdrasil listen:['tcp://[${ULA}1]:9001']"; server_lines srv; } | pb A up
  { echo "!!heropods.enable_yggdrasil peers:['tcp://[${ULA}1]:9001']"; client_lines cli; } | pb B up
  hrun A up
  [ "$status" -eq 0 ]
  [[ "$output" == *"yggdrasil: node 2"* ]]
  hrun B up
  [ "$status" -eq 0 ]
  a=$(ovaddr A srv)
  echo "# srv $a" >&2
  # in the node's routed /64 (300::/8), containers route 200::/7
  [[ "$a" == 3* ]]
  run pods A exec srv -- ip -6 route
  [[ "$output" == *"200::/7 via fe80::1"* ]]
  run fetch B cli "$a"
  echo "# fetch: $output" >&2
  [ "$status" -eq 0 ]
  [ "$output" = srv ]
  # hero's config: multicast off, its own key, private
  grep -q '"MulticastInterfaces": \[\]' "$T/A/overlay/yggdrasil.conf"
  [ "$(stat -c %a "$T/A/overlay/yggdrasil.conf")" = 600 ]
  [ "$(stat -c %a "$T/A/overlay/yggdrasil.key")" = 600 ]
  run pods B overlay
  echo "$output" >&2
  [[ "$output" == *"tcp://[${ULA}1]:9001"* ]]
}

@test "overlay errors: an old version, a missing key file, a malformed peer, an unreachable API, no mycelium, a killed hero" {
  host A
  HOST_NOW=A
  # older than required (the double says what the test asks it to)
  head -c 32 /dev/urandom > "$T/key-A"
  mycelium_line "tcp://[fd00::99]:9651" | pb A old
  MYCELIUM_DOUBLE_VERSION=0.6.2 hrun A old
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"mycelium 0.6.2 (mycelium -V) is older than the required version 0.7.0"* ]]
  [[ "$stderr" == *"A-old.hs:2:"* ]]
  # a missing key file
  sed "s|key-A|no-such-key|" "$T/A-old.hs" > "$T/A-nokey.hs"
  hrun A nokey
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"mycelium key file $T/no-such-key (key_path): No such file or directory"* ]]
  # a malformed peer: refused before anything runs, with its place
  mycelium_line "tcp://fd00::99" | pb A badpeer
  hrun A badpeer
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"A-badpeer.hs:2:"* ]]
  [[ "$stderr" == *"an IPv6 peer address goes in brackets"* ]]
  [[ "$stderr" == *"nothing ran"* ]]
  # an API address the daemon cannot serve: hero waits, then stops it again
  mycelium_line "tcp://[fd00::99]:9651" "api_addr:'192.0.2.55:8989'" | pb A noapi
  hrun A noapi
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"did not answer at 192.0.2.55:8989 within 15 s"* ]]
  # no mycelium installed
  PATH=/usr/sbin:/usr/bin:/sbin:/bin hrun A old
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"no mycelium daemon answers at 127.0.0.1:8989 and mycelium is not installed"* ]]
  # a hero killed while it waits for the daemon it started: reset stops that daemon
  mycelium_line "tcp://[fd00::99]:9651" "api_addr:'192.0.2.55:8989'" | pb A killed
  in_host A "$HERO" run "$T/A-killed.hs" > /dev/null 2>&1 &
  hero_pid=$!
  for i in $(seq 100); do
    # hero writes the store meanwhile: wait for its lock, and try again when busy
    pending=$(sqlite3 -cmd '.timeout 5000' "$T/A/hero.db" "SELECT json_extract(value, '\$.pid') FROM meta WHERE key='overlay-daemon.ov${N}A'" 2> /dev/null) || pending=""
    [ -z "$pending" ] || break
    sleep 0.1
  done
  [ -n "$pending" ] && kill -0 "$pending"
  kill -KILL "$hero_pid"
  wait "$hero_pid" || true
  kill -0 "$pending"
  hdr A reset:true > "$T/A-reset.hs"
  run in_host A "$HERO" run "$T/A-reset.hs"
  [ "$status" -eq 0 ]
  for i in $(seq 50); do kill -0 "$pending" 2> /dev/null || break; sleep 0.1; done
  run kill -0 "$pending"
  [ "$status" -ne 0 ]
  # nothing is left: no daemon in the host, no TUN, no overlay saved
  [ -z "$(ns_pids "$HOLD_A" | grep -vx "$HOLD_A")" ]
  run in_host A ip link show mycelium
  [ "$status" -ne 0 ]
  [ "$(sqlite3 "$T/A/hero.db" "SELECT count(*) FROM meta WHERE key LIKE 'overlay%'")" -eq 0 ]
}
