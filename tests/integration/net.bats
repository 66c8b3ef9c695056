#!/usr/bin/env bats
# IPv4 networking on the real kernel: bridge, leases, names, NAT, published ports,
# nftables rules, as root.
#
# Network safety: these tests run only inside a private network namespace (tests/run
# runs the suite through tests/in-netns; the setup below skips otherwise), which has
# no uplink at all. Each test has its own bridge name and subnet; the only other
# addresses are those of an "outside" namespace the test makes itself (192.0.2.0/24,
# TEST-NET-1, on a veth that ends in that namespace). dns_servers is 127.0.0.1: no
# name is ever looked up outside.

bats_require_minimum_version 1.5.0
load lib

setup() {
  [ "$(id -u)" -eq 0 ] || skip "needs root: real bridges, veths and nftables rules"
  CRUN=$(command -v crun) || skip "needs crun (Debian package crun)"
  command -v sqlite3 > /dev/null || skip "needs sqlite3 (make deps) to read the leases"
  command -v nft > /dev/null || skip "needs nft (make deps) to read the rules"
  [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] ||
    skip "makes bridges and rules: run it in a private network namespace (tests/in-netns bats ...; tests/run does)"
  if [ -s /sys/fs/cgroup/unified/cgroup.controllers ]; then
    skip "crun refuses this machine's hybrid cgroups: make cgroup-fix"
  fi
  HERO=${HERO:-$BATS_TEST_DIRNAME/../../build/hero}
  HERO=$(cd "$(dirname "$HERO")" && pwd)/$(basename "$HERO")
  [ -x "$HERO" ] || { echo "$HERO missing: run make" >&2; return 1; }
  BASE=$(mktemp -d /tmp/hero-net.XXXXXX)
  INST="net${BATS_TEST_NUMBER}"
  N=$BATS_TEST_NUMBER
  BR="hn${N}b$$"
  BR=${BR:0:15}
  SUBNET="10.$(( 150 + N )).$(( $$ % 250 )).0/24"
  NET24=${SUBNET%.0/24}
  CTRS=""
  BG_PIDS=""
  OUTSIDE_PID=""
  set_hdr
}

# set_hdr [EXTRA...]: the configure line every playbook of the test starts with
set_hdr() {
  HDR="!!heropods.configure name:'$INST' base_dir:'$BASE' bridge_name:'$BR' subnet:'$SUBNET'"
  HDR+=" dns_servers:['127.0.0.1'] $*"
}

teardown() {
  [ -n "${BASE:-}" ] || return 0
  local p
  for p in $BG_PIDS $OUTSIDE_PID; do
    kill -KILL "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
  done
  if [ -d "$BASE" ] && [ -n "$CTRS" ]; then
    write_cleanup
    "$HERO" run "$BASE/cleanup.hs" > /dev/null 2>&1 || true
  fi
  force_remove "$BASE"
  ip link del "$BR" 2> /dev/null || true
  ip link del hout$N 2> /dev/null || true
  ip link del "hd$N" 2> /dev/null || true
  local br2="ho${N}b$$" own="hw${N}b$$"
  ip link del "${br2:0:15}" 2> /dev/null || true
  ip link del "${own:0:15}" 2> /dev/null || true
  local t
  for t in $(nft list tables 2> /dev/null | awk '$3 ~ /^hero_/ { print $3 }'); do
    case $t in *_"$BR" | *_"${br2:0:15}" | *_"${own:0:15}") nft delete table ip "$t" 2> /dev/null || true ;; esac
  done
  nft delete table ip filter 2> /dev/null || true
}

# ctr_ip NAME: the address on eth0 inside the container, as the container sees it
ctr_ip() {
  printf '%s\n' "$HDR" "!!heropods.container_exec name:'$1' cmd:'ip -4 -o addr show eth0'" \
    > "$BASE/ip.hs"
  "$HERO" run "$BASE/ip.hs" | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p'
}

# lease NAME: the container's lease in the store
lease() {
  sqlite3 "$BASE/hero.db" "SELECT l.addr FROM leases l JOIN containers c ON c.id = l.container_id
                           WHERE c.instance = '$INST' AND c.name = '$1';"
}

table() { # the instance's nftables table: hero_<8 hex of the store uid>_<bridge>
  local uid
  uid=$(sqlite3 "$BASE/hero.db" "SELECT value FROM meta WHERE key = 'uid';")
  echo "hero_${uid:0:8}_$BR"
}

# links_become N: within 3 s, this store has N host-side veths (a stopped
# container's pair is removed by the kernel, with its namespace, a moment later)
links_become() {
  local i
  for i in $(seq 1 60); do
    [ "$(host_links | wc -l)" -eq "$1" ] && return 0
    sleep 0.05
  done
  echo "host links: $(host_links | tr '\n' ' '), not $1" >&2
  return 1
}

host_links() { # the host ends of this store's veths
  local uid
  uid=$(sqlite3 "$BASE/hero.db" "SELECT value FROM meta WHERE key = 'uid';")
  ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | grep "^vh${uid:0:6}" || true
}

# in_map PORT: the instance's map of published ports has the host port
in_map() {
  nft list map ip "$(table)" ports 2> /dev/null | grep -q "tcp \. $1 :"
}

# page_at PORT: what the host gets from http://127.0.0.1:PORT/, given 2 s to come up
page_at() {
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    timeout 5 busybox wget -q -O- "http://127.0.0.1:$1/" 2> /dev/null && return 0
    sleep 0.2
  done
  return 1
}

# an httpd container: serves "$2" at / on port 80
httpd_ctr() {
  echo "!!heropods.container_new name:'$1' image:'embedded' ${3:-}"
  echo "    cmd:['/bin/sh', '-c', 'mkdir -p /www && echo $2 > /www/index.html && exec httpd -f -p 80 -h /www']"
  echo "!!heropods.container_start name:'$1'"
}

# ---------------------------------------------------------------- addresses and names

@test "two containers in a custom subnet get distinct addresses and fetch from each other by name" {
  CTRS="web cli"
  { httpd_ctr web hello-from-web
    httpd_ctr cli hello-from-cli
    echo "!!heropods.container_exec name:'cli' cmd:'wget -q -O- http://web/' timeout:'10s'"
    echo "!!heropods.container_exec name:'web' cmd:'wget -q -O- http://cli/' timeout:'10s'"
  } | pb up
  hero_run up
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = hello-from-web ]
  [ "${lines[1]}" = hello-from-cli ]
  local a b
  a=$(ctr_ip web)
  b=$(ctr_ip cli)
  echo "web $a, cli $b" >&2
  [[ "$a" == "$NET24".* ]]
  [[ "$b" == "$NET24".* ]]
  [ "$a" != "$b" ]
  [ "$a" != "$NET24.1" ] && [ "$b" != "$NET24.1" ]   # the gateway is never leased
  [ "$(lease web)" = "$a" ]
  # the names come from /etc/hosts (no DNS server), and each container has its own
  grep -q "^$a[[:space:]]web\$" "$BASE/containers/$(sqlite3 "$BASE/hero.db" \
    "SELECT id FROM containers WHERE name='cli'")/etc/hosts"
  # the bridge carries the gateway; the default route in a container goes through it
  ip -4 -o addr show dev "$BR" | grep -q "inet $NET24.1/24"
  printf '%s\n' "$HDR" "!!heropods.container_exec name:'cli' cmd:'ip route show default'" \
    > "$BASE/r.hs"
  [[ "$("$HERO" run "$BASE/r.hs")" == "default via $NET24.1 dev eth0"* ]]
  # resolv.conf is the instance's dns_servers, not the image's
  printf '%s\n' "$HDR" "!!heropods.container_exec name:'cli' cmd:'cat /etc/resolv.conf'" \
    > "$BASE/d.hs"
  [ "$("$HERO" run "$BASE/d.hs")" = "nameserver 127.0.0.1" ]
}

@test "a /28 fills up: the next container gets a clear 'no free address' error naming the subnet" {
  SUBNET="10.$(( 150 + N )).$(( $$ % 250 )).16/28"
  set_hdr nat:false
  local i
  # 16 addresses: network, broadcast and the gateway (.17) are never leased: 13 left
  for i in $(seq 1 14); do
    CTRS+=" c$i"
    echo "!!heropods.container_new name:'c$i' image:'embedded' cmd:['sleep', '600']"
  done | pb new
  hero_run new
  [ "$status" -eq 0 ]
  for i in $(seq 1 13); do echo "!!heropods.container_start name:'c$i'"; done | pb up
  hero_run up -j 4
  [ "$status" -eq 0 ]
  echo "!!heropods.container_start name:'c14'" | pb full
  hero_run full
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"no free address in ${SUBNET}"* ]]
  # the failed start left nothing running and no lease
  [ -z "$(lease c14)" ]
  [ "$("$CRUN" --root "$BASE/crun" list -q | wc -l)" -eq 13 ]
  local n
  n=$(sqlite3 "$BASE/hero.db" "SELECT count(DISTINCT addr) FROM leases WHERE instance='$INST'")
  [ "$n" -eq 13 ]
  # deleting one frees its address for the next
  printf '%s\n' "!!heropods.container_delete name:'c5'" "!!heropods.container_start name:'c14'" | pb again
  hero_run again
  [ "$status" -eq 0 ]
  [ -n "$(lease c14)" ]
}

@test "addresses survive stop and start; a lease is freed on delete" {
  CTRS="a b"
  pb up <<'EOF'
!!heropods.container_new name:'a' image:'embedded' cmd:['sleep', '600']
!!heropods.container_new name:'b' image:'embedded' cmd:['sleep', '600']
!!heropods.container_start name:'a'
!!heropods.container_start name:'b'
EOF
  hero_run up
  [ "$status" -eq 0 ]
  local a1 b1
  a1=$(ctr_ip a)
  b1=$(ctr_ip b)
  [ -n "$a1" ] && [ -n "$b1" ]
  pb restart <<'EOF'
!!heropods.container_stop name:'a' timeout:'1s'
!!heropods.container_stop name:'b' timeout:'1s'
!!heropods.container_start name:'b'
!!heropods.container_start name:'a'
EOF
  hero_run restart
  [ "$status" -eq 0 ]
  [ "$(ctr_ip a)" = "$a1" ]
  [ "$(ctr_ip b)" = "$b1" ]
  # a stopped container keeps its lease but not its veth
  local before
  before=$(host_links | wc -l)
  [ "$before" -eq 2 ]
  echo "!!heropods.container_stop name:'a' timeout:'1s'" | pb stop
  hero_run stop
  links_become 1
  [ "$(lease a)" = "$a1" ]
  echo "!!heropods.container_delete name:'a'" | pb del
  hero_run del
  [ "$status" -eq 0 ]
  [ -z "$(lease a)" ]
  # and b's /etc/hosts no longer lists it
  printf '%s\n' "$HDR" "!!heropods.container_exec name:'b' cmd:'cat /etc/hosts'" > "$BASE/h.hs"
  [[ "$("$HERO" run "$BASE/h.hs")" != *$'\t'a$'\n'* ]]
  printf '%s\n' "!!heropods.container_new name:'c' image:'embedded' cmd:['sleep', '600']" \
    "!!heropods.container_start name:'c'" | pb c
  CTRS+=" c"
  hero_run c
  [ "$status" -eq 0 ]
  [ "$(ctr_ip c)" = "$a1" ]     # the lowest free address again
}

@test "four hero processes each starting 10 containers at once never collide" {
  local p i pids=""
  for p in 1 2 3 4; do
    for i in $(seq 1 10); do
      CTRS+=" p${p}c$i"
      echo "!!heropods.container_new name:'p${p}c$i' image:'embedded' cmd:['sleep', '600']"
      echo "!!heropods.container_start name:'p${p}c$i'"
    done | pb "p$p"
  done
  pb conf < /dev/null
  hero_run conf                           # the instance exists before the race
  for p in 1 2 3 4; do
    "$HERO" run -j 4 "$BASE/p$p.hs" > "$BASE/p$p.out" 2>&1 &
    pids+=" $!"
  done
  BG_PIDS=$pids
  local rc=0
  for p in $pids; do wait "$p" || rc=1; done
  BG_PIDS=""
  cat "$BASE"/p*.out >&2
  [ "$rc" -eq 0 ]
  local n d
  n=$(sqlite3 "$BASE/hero.db" "SELECT count(*) FROM leases WHERE instance='$INST'")
  d=$(sqlite3 "$BASE/hero.db" "SELECT count(DISTINCT addr) FROM leases WHERE instance='$INST'")
  [ "$n" -eq 40 ]
  [ "$d" -eq 40 ]
  # what the kernel has agrees: 40 veths on the bridge, 40 distinct addresses inside
  [ "$(ip -o link show master "$BR" | wc -l)" -eq 40 ]
  # every container's /etc/hosts lists all 40 (itself first)
  local f
  for f in "$BASE"/containers/*/etc/hosts; do
    [ "$(grep -c "^$NET24\." "$f")" -eq 40 ] || { echo "$f:" >&2; cat "$f" >&2; return 1; }
  done
}

# ---------------------------------------------------------------- rules

@test "rules exist after configure, are not duplicated by a second configure, and go with reset" {
  set_hdr nat:true
  pb conf < /dev/null
  hero_run conf
  [ "$status" -eq 0 ]
  local t
  t=$(table)
  nft list table ip "$t" > "$BASE/rules1"
  cat "$BASE/rules1" >&2
  grep -q "ip saddr $SUBNET oifname != \"$BR\" masquerade" "$BASE/rules1"
  grep -q "iifname \"$BR\" accept" "$BASE/rules1"
  [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
  hero_run conf
  [ "$status" -eq 0 ]
  nft list table ip "$t" > "$BASE/rules2"
  diff "$BASE/rules1" "$BASE/rules2"
  [ "$(grep -c masquerade "$BASE/rules2")" -eq "$(grep -c masquerade "$BASE/rules1")" ]
  # nat:false takes the masquerade away
  set_hdr nat:false
  pb conf < /dev/null
  hero_run conf
  fails grep -q "saddr $SUBNET.*masquerade" <(nft list table ip "$t")
  # a container's published port is in the map until reset
  CTRS="p"
  httpd_ctr p x "ports:['$(( 20000 + N )):80']" | pb up
  hero_run up
  [ "$status" -eq 0 ]
  in_map $(( 20000 + N ))
  # reset onto another bridge: the old bridge, table and lease are gone
  local oldbr=$BR
  BR="hn${N}r$$"
  BR=${BR:0:15}
  set_hdr reset:true
  pb reset < /dev/null
  hero_run reset
  [ "$status" -eq 0 ]
  CTRS=""
  fails ip link show "$oldbr"
  fails nft list table ip "$t"
  [ "$(sqlite3 "$BASE/hero.db" "SELECT count(*) FROM leases")" -eq 0 ]
  nft list table ip "$(table)" > /dev/null
  ip link show "$BR" > /dev/null
}

# ---------------------------------------------------------------- ports

@test "a bridge is one instance's: another base dir's configure onto it is refused, naming the owner" {
  pb conf < /dev/null
  hero_run conf
  [ "$status" -eq 0 ]
  ip -d link show "$BR" | grep -q "alias hero: store [0-9a-z]* instance '$INST' of $BASE\$"
  # the same store spelt otherwise (a trailing slash) is the same owner
  printf '%s\n' "!!heropods.configure name:'$INST' base_dir:'$BASE/' bridge_name:'$BR' subnet:'$SUBNET' dns_servers:['127.0.0.1']" \
    > "$BASE/slash.hs"
  hero_run slash
  [ "$status" -eq 0 ]
  # the same bridge from a second store (another base dir, another instance name)
  local other=$BASE/other
  mkdir -p "$other"
  local osub="10.$(( 150 + N )).$(( ($$ + 2) % 250 )).0/24"
  printf '%s\n' "!!heropods.configure name:'other$N' base_dir:'$other' bridge_name:'$BR' subnet:'$osub' dns_servers:['127.0.0.1']" \
    > "$BASE/other.hs"
  hero_run other
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"bridge $BR belongs to another hero instance (store "*" instance '$INST' of $BASE)"* ]]
  [[ "$stderr" == *"ip link del $BR"* ]]
  # refused before anything of it went onto the bridge: not its gateway address
  fails grep -q " ${osub%.0/24}.1/" <(ip -4 -o addr show dev "$BR")
  grep -q " ${SUBNET%.0/24}.1/" <(ip -4 -o addr show dev "$BR")
  # an instance with a bridge of its own, moved onto the owned one: refused before its
  # own bridge goes, its settings as they were
  local own="hw${N}b$$"
  own=${own:0:15}
  printf '%s\n' "!!heropods.configure name:'other$N' base_dir:'$other' bridge_name:'$own' subnet:'$osub' dns_servers:['127.0.0.1']" \
    > "$BASE/own.hs"
  hero_run own
  [ "$status" -eq 0 ]
  hero_run other
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"bridge $BR belongs to another hero instance"* ]]
  grep -q " ${osub%.0/24}.1/" <(ip -4 -o addr show dev "$own")
  [[ "$(sqlite3 "$other/hero.db" "SELECT settings FROM instances WHERE name = 'other$N'")" == *"\"$own\""* ]]
  # the owner's configure still works, its reset too (the bridge is made again, its)
  hero_run conf
  [ "$status" -eq 0 ]
  set_hdr reset:true
  pb reset < /dev/null
  hero_run reset
  [ "$status" -eq 0 ]
  ip -d link show "$BR" | grep -q "alias hero: store [0-9a-z]* instance '$INST' of $BASE\$"
  # the owner gone (its bridge removed), the other store may take the name
  ip link del "$BR"
  hero_run other
  [ "$status" -eq 0 ]
  ip -d link show "$BR" | grep -q "alias hero: store [0-9a-z]* instance 'other$N' of $other\$"
  # a base dir too long for the alias (IFALIASZ): cut, and still this store's
  local deep=$BASE/$(printf 'd%.0s' $(seq 120))/$(printf 'e%.0s' $(seq 120))
  mkdir -p "$deep"
  printf '%s\n' "!!heropods.configure name:'deep$N' base_dir:'$deep' bridge_name:'$BR' subnet:'$SUBNET' dns_servers:['127.0.0.1']" \
    > "$BASE/deep.hs"
  hero_run other
  [ "$status" -eq 0 ]
  ip link del "$BR"
  hero_run deep
  [ "$status" -eq 0 ]
  hero_run deep
  [ "$status" -eq 0 ]
  ip -d link show "$BR" | grep -q "alias hero: store [0-9a-z]* instance 'deep$N' of $BASE/ddd"
  # a bridge of the user's own, with an alias of theirs, is used as it is
  local mine="hm${N}b$$"
  mine=${mine:0:15}
  ip link add "$mine" type bridge
  ip link set "$mine" alias "my lab bridge"
  printf '%s\n' "!!heropods.configure name:'mine$N' base_dir:'$other' bridge_name:'$mine' subnet:'10.$(( 150 + N )).$(( ($$ + 1) % 250 )).0/24' dns_servers:['127.0.0.1']" \
    > "$BASE/mine.hs"
  hero_run mine
  local st=$status t
  ip -d link show "$mine" | grep -q "alias my lab bridge"
  ip link del "$mine"
  for t in $(nft list tables 2> /dev/null | awk '$3 ~ /^hero_/ { print $3 }'); do
    case $t in *_"$mine") nft delete table ip "$t" ;; esac
  done
  [ "$st" -eq 0 ]
}

@test "a subnet that overlaps an address on the host is refused before anything is made" {
  pb conf < /dev/null
  hero_run conf
  [ "$status" -eq 0 ]
  # a second instance (another base dir) on a /25 inside the first one's /24
  local other=$BASE/other br2="ho${N}b$$"
  br2=${br2:0:15}
  mkdir -p "$other"
  other_conf() {
    printf '%s\n' "!!heropods.configure name:'other$N' base_dir:'$other' bridge_name:'$br2' subnet:'$1' dns_servers:['127.0.0.1']" \
      > "$BASE/other.hs"
  }
  other_conf "$NET24.128/25"
  hero_run other
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"subnet $NET24.128/25 overlaps $NET24.1/24 on $BR (the bridge of store "*" instance '$INST' of $BASE): give this instance a subnet of its own"* ]]
  # refused before anything was made: no bridge, no nftables table
  fails ip link show "$br2"
  local tables
  tables=$(nft list tables)
  [[ "$tables" == *"_$BR"* && "$tables" != *"_$br2"* ]]
  # a network of the host's own (a link of the user's, here a bridge: this kernel has no
  # dummy links) with 172.31.N.1/24, and a /26 in it
  ip link add "hd$N" type bridge
  ip addr add "172.31.$N.1/24" dev "hd$N"
  other_conf "172.31.$N.64/26"
  hero_run other
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"subnet 172.31.$N.64/26 overlaps 172.31.$N.1/24 on hd$N: give this instance a subnet of its own"* ]]
  fails ip link show "$br2"
  # a working instance moved onto a subnet in the way: refused before its network goes,
  # its settings as they were
  printf '%s\n' "!!heropods.configure name:'$INST' base_dir:'$BASE' bridge_name:'$BR' subnet:'172.31.$N.0/25' dns_servers:['127.0.0.1']" \
    > "$BASE/move.hs"
  hero_run move
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"network of instance '$INST': subnet 172.31.$N.0/25 overlaps 172.31.$N.1/24 on hd$N"* ]]
  grep -q " $NET24.1/24" <(ip -4 -o addr show dev "$BR")
  [[ "$(sqlite3 "$BASE/hero.db" "SELECT settings FROM instances WHERE name = '$INST'")" == *"\"$SUBNET\""* ]]
  # a point-to-point address is itself a /32, its peer has the prefix
  ip addr add "172.29.$N.1" peer "172.28.$N.0/24" dev "hd$N"
  other_conf "172.29.$N.4/30"
  hero_run other
  [ "$status" -eq 0 ]
  ip link del "$br2"
  other_conf "172.28.$N.128/25"
  hero_run other
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"overlaps 172.28.$N.0/24 on hd$N"* ]]
  other_conf "172.29.$N.0/30"
  hero_run other
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"overlaps 172.29.$N.1/32 on hd$N"* ]]
  # a subnet of its own works, the first instance's configure still does
  other_conf "172.30.$N.0/24"
  hero_run other
  [ "$status" -eq 0 ]
  grep -q " 172.30.$N.1/24" <(ip -4 -o addr show dev "$br2")
  hero_run conf
  [ "$status" -eq 0 ]
}

@test "a published port reaches a container's httpd from the host; a taken port is a clear error" {
  local port=$(( 21000 + N ))
  CTRS="pub"
  httpd_ctr pub published-page "ports:['$port:80/tcp']" | pb up
  hero_run up
  [ "$status" -eq 0 ]
  local got
  got=$(page_at "$port")
  [ "$got" = published-page ]
  # the bridge's own address is one of the host's too
  [ "$(timeout 5 busybox wget -q -O- "http://$NET24.1:$port/")" = published-page ]
  # a second container cannot have the same host port
  CTRS+=" dup"
  httpd_ctr dup x "ports:['$port:80']" | pb dup
  hero_run dup
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"host port $port/tcp is already published by container 'pub'"* ]]
  # nor a port a host program listens on
  busybox nc -l -p $(( port + 1 )) > /dev/null 2>&1 &
  BG_PIDS=$!
  sleep 0.2
  CTRS+=" busy"
  httpd_ctr busy x "ports:['$(( port + 1 )):80']" | pb busy
  hero_run busy
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"host port $(( port + 1 ))/tcp is already in use on this host"* ]]
  [ "$("$CRUN" --root "$BASE/crun" list -q | wc -l)" -eq 1 ]   # only pub runs
  # stopping the container unpublishes the port
  echo "!!heropods.container_stop name:'pub' timeout:'1s'" | pb stop
  hero_run stop
  [ "$status" -eq 0 ]
  fails in_map "$port"
  fails timeout 5 busybox wget -q -O- "http://127.0.0.1:$port/"
}

@test "two starts at once cannot both publish one host port" {
  local port=$(( 21200 + N ))
  CTRS="twa twb"
  { httpd_ctr twa page-twa "ports:['$port:80']"
    httpd_ctr twb page-twb "ports:['$port:80']"
  } | pb up
  hero_run up
  [ "$status" -ne 0 ]
  [[ "$stderr" == *"host port $port/tcp is already published by container 'tw"* ]]
  local running
  running=$("$CRUN" --root "$BASE/crun" list -q | wc -l)
  [ "$running" -eq 1 ]
  # the port leads to the one that runs, and stays published when the other is deleted
  local got
  got=$(page_at "$port")
  [[ "$got" == page-tw? ]]
  local winner=${got#page-} loser=twa
  [ "$winner" = twa ] && loser=twb
  echo "!!heropods.container_delete name:'$loser'" | pb del
  hero_run del
  [ "$status" -eq 0 ]
  [ "$(timeout 5 busybox wget -q -O- "http://127.0.0.1:$port/")" = "page-$winner" ]
}

# ---------------------------------------------------------------- outside the bridge

# outside_ns: a namespace standing for the world beyond the host, joined by a veth:
# the host side 192.0.2.1/24, the outside 192.0.2.2/24, where an httpd serves "outside"
outside_ns() {
  local www=$BASE/outside-www
  mkdir -p "$www"
  echo outside > "$www/index.html"
  unshare --net -- busybox httpd -f -p 80 -h "$www" &
  OUTSIDE_PID=$!
  sleep 0.2
  ip link add hout$N type veth peer name eth0 netns "$OUTSIDE_PID"
  ip addr add 192.0.2.1/24 dev hout$N
  ip link set hout$N up
  nsenter --net="/proc/$OUTSIDE_PID/ns/net" ip addr add 192.0.2.2/24 dev eth0
  nsenter --net="/proc/$OUTSIDE_PID/ns/net" ip link set eth0 up
  nsenter --net="/proc/$OUTSIDE_PID/ns/net" ip link set lo up
}

@test "NAT and a FORWARD policy of DROP: containers reach the outside, masqueraded" {
  command -v nsenter > /dev/null || skip "needs nsenter (util-linux)"
  # as docker leaves a host: iptables' FORWARD chain drops what nobody accepts
  nft add table ip filter
  nft add chain ip filter FORWARD '{ type filter hook forward priority 0; policy drop; }'
  outside_ns
  set_hdr nat:true
  CTRS="out"
  pb up <<'EOF'
!!heropods.container_new name:'out' image:'embedded'
!!heropods.container_start name:'out' keep_alive:true
!!heropods.container_exec name:'out' cmd:'wget -q -O- http://192.0.2.2/' timeout:'10s'
EOF
  hero_run up
  [ "$status" -eq 0 ]
  # the outside namespace has no route to the container's subnet: the answer came
  # back only because the request was masqueraded to the host's 192.0.2.1
  [ "$output" = outside ]
  local ct
  ct=$(nft list chain ip filter FORWARD)
  echo "$ct" >&2
  [[ "$ct" == *"policy drop"* ]]
  [[ "$ct" == *"hero:$(table)"* ]]
  # without hero's accept rules there, the same fetch is dropped (so this test can fail)
  local h
  for h in $(nft -a list chain ip filter FORWARD | sed -n 's/.*comment "hero:.*# handle \([0-9]*\)$/\1/p'); do
    nft delete rule ip filter FORWARD handle "$h"
  done
  # (a playbook without configure: configure would put them back)
  echo "!!heropods.container_exec heropods:'$INST' name:'out' cmd:'wget -q -O- http://192.0.2.2/' timeout:'3s'" \
    > "$BASE/fetch.hs"
  HERO_BASE_DIR=$BASE hero_run fetch
  [ "$status" -ne 0 ]
  # configure puts them back, once however often it runs
  pb conf < /dev/null
  hero_run conf
  hero_run conf
  [ "$(nft list chain ip filter FORWARD | grep -c "iifname \"$BR\"")" -eq 1 ]
  HERO_BASE_DIR=$BASE hero_run fetch
  [ "$status" -eq 0 ]
  [ "$output" = outside ]
  # reset onto another bridge takes them away (and makes the new bridge's)
  local oldt
  oldt=$(table)
  BR="hn${N}s$$"
  BR=${BR:0:15}
  set_hdr nat:true reset:true
  pb reset < /dev/null
  hero_run reset
  [ "$status" -eq 0 ]
  CTRS=""
  [ "$(nft list chain ip filter FORWARD | grep -c "hero:$oldt\"")" -eq 0 ]
  [ "$(nft list chain ip filter FORWARD | grep -c "iifname \"$BR\"")" -eq 1 ]
}

# ---------------------------------------------------------------- crashes

@test "SIGKILL of hero during a start, then a rerun, leaves no orphan veth, lease or rule" {
  local port=$(( 22000 + N ))
  CTRS="k"
  pb up <<EOF
!!heropods.container_new name:'k' image:'embedded' ports:['$port:80']
    cmd:['/bin/sh', '-c', 'sleep 30']
!!heropods.container_start name:'k' keep_alive:true timeout:'60s'
EOF
  "$HERO" run "$BASE/up.hs" > /dev/null 2>&1 &
  local hp=$!
  BG_PIDS=$hp
  # wait until the network is up (the start then waits for the entrypoint)
  local i
  for i in $(seq 1 100); do
    [ -n "$(host_links)" ] && in_map "$port" && break
    sleep 0.05
  done
  [ -n "$(host_links)" ]
  kill -KILL "$hp"
  wait "$hp" 2> /dev/null || true
  BG_PIDS=""
  # the rerun converges (a shorter entrypoint this time is a changed definition: reset)
  pb up2 <<EOF
!!heropods.container_new name:'k' image:'embedded' ports:['$port:80'] reset:true
    cmd:['/bin/sh', '-c', 'exit 0']
!!heropods.container_start name:'k' keep_alive:true
EOF
  hero_run up2
  [ "$status" -eq 0 ]
  [ "$(host_links | wc -l)" -eq 1 ]
  in_map "$port"
  echo "!!heropods.container_delete name:'k'" | pb down
  hero_run down
  [ "$status" -eq 0 ]
  CTRS=""
  links_become 0
  [ "$(sqlite3 "$BASE/hero.db" "SELECT count(*) FROM leases")" -eq 0 ]
  [ "$(sqlite3 "$BASE/hero.db" "SELECT count(*) FROM host_objects")" -eq 0 ]
  fails in_map "$port"
}
