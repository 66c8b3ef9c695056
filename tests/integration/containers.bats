#!/usr/bin/env bats
# Containers on real crun: new / start / exec / stop / delete, end to end, as root.
#
# Every test has its own base dir (mktemp) and instance name, uses only the embedded
# image (no registry, no network: dns_servers is 127.0.0.1, nothing is pinged), and
# checks in the test itself that it leaves nothing behind: no crun container under
# its own crun root, no mount under its base dir, no process whose root is there,
# and an empty $BASE/containers. Processes are only ever killed by the pid this file
# recorded when it started them.
#
# Container ids: every store numbers its containers from 1, so two base dirs (another
# test run, the machine's /var/lib/hero) hand out the same ids; hero keeps their
# host-wide names apart with the store's own random uid (cgroup
# /hero/<uid>-hero-<id>). Each base dir here still starts its ids at a random high
# number (sqlite_sequence), so that the test "two base dirs never share a cgroup" can
# give two stores the very same ids and show they stay apart.

bats_require_minimum_version 1.5.0
load lib

setup() {
  [ "$(id -u)" -eq 0 ] || skip "needs root: containers run on real crun"
  CRUN=$(command -v crun) || skip "needs crun (Debian package crun)"
  [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] ||
    skip "makes bridges and rules: run it in a private network namespace (tests/in-netns bats ...; tests/run does)"
  command -v sqlite3 > /dev/null ||
    skip "needs sqlite3: container ids are moved apart from other hero stores (see top of file)"
  if [ -s /sys/fs/cgroup/unified/cgroup.controllers ]; then
    skip "crun refuses this machine's hybrid cgroups; fix once per boot: mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb"
  fi
  HERO=${HERO:-$BATS_TEST_DIRNAME/../../build/hero}
  HERO=$(cd "$(dirname "$HERO")" && pwd)/$(basename "$HERO")
  [ -x "$HERO" ] || { echo "$HERO missing: run make build/hero build/hero-init" >&2; return 1; }
  [ -x "$(dirname "$HERO")/hero-init" ] || [ -n "${HERO_INIT:-}" ] ||
    { echo "hero-init missing beside $HERO: run make build/hero-init" >&2; return 1; }
  BASE=$(mktemp -d /tmp/hero-ctr.XXXXXX)
  INST="ct${BATS_TEST_NUMBER}p$$"
  CTRS=""          # the test's container names, deleted by the cleanup playbook
  BG_PIDS=""       # processes this test started in the background
  # the test's own bridge and subnet, no NAT (see tests/in-netns)
  HDR="!!heropods.configure name:'$INST' base_dir:'$BASE' dns_servers:['127.0.0.1']"
  HDR+=" bridge_name:'hc${BATS_TEST_NUMBER}p$$' nat:false"
  HDR+=" subnet:'10.$(( 100 + BATS_TEST_NUMBER % 100 )).$(( $$ % 250 )).0/24'"
  # the store exists, and this base dir's container ids start far from anyone's
  printf '%s\n' "$HDR" > "$BASE/configure.hs"
  "$HERO" run "$BASE/configure.hs"
  SEQ=$(( 1000000 + (RANDOM * 32768 + RANDOM) % 900000000 ))
  sqlite3 "$BASE/hero.db" \
    "INSERT INTO sqlite_sequence(name, seq) VALUES('containers', $SEQ);"
}

teardown() {
  [ -n "${BASE:-}" ] || return 0
  local p
  for p in $BG_PIDS; do
    kill -KILL "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
  done
  if [ -d "$BASE" ]; then
    write_cleanup
    "$HERO" run "$BASE/cleanup.hs" > /dev/null 2>&1 || true
  fi
  force_remove "$BASE"
  [ -z "${BASE2:-}" ] || force_remove "$BASE2"
}

# ---------------------------------------------------------------- helpers

crun_ids() {
  [ -d "$BASE/crun" ] || return 0
  "$CRUN" --root "$BASE/crun" list -q 2> /dev/null || true
}

mounts_under() {
  awk -v b="$BASE" '$5 == b || index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo
}

# processes whose "/" is a container root of this base dir (an overlay whose upper
# dir is under it), and crun processes working on its crun root
procs_under() {
  local b=${BASE//./\\.}
  grep -lE "^[0-9]+ [0-9]+ [0-9]+:[0-9]+ [^ ]+ / .*upperdir=$b/" /proc/[0-9]*/mountinfo \
    2> /dev/null || true
  pgrep -a -f -- "--root=$BASE/crun" || true
}

# nothing_running: no crun container, no mount, no process of this base dir
nothing_running() {
  local x
  x=$(crun_ids)
  [ -z "$x" ] || { echo "crun containers left: $x" >&2; return 1; }
  x=$(mounts_under)
  [ -z "$x" ] || { echo "mounts left: $x" >&2; return 1; }
  x=$(procs_under)
  [ -z "$x" ] || { echo "processes left: $x" >&2; return 1; }
}

# assert_clean: the cleanup playbook (delete every container of the test) succeeds,
# then nothing is left: no crun container, mount, process or container directory
assert_clean() {
  write_cleanup
  hero_run cleanup
  [ "$status" -eq 0 ] || { echo "the cleanup playbook failed" >&2; return 1; }
  nothing_running
  if [ -d "$BASE/containers" ] && [ -n "$(ls -A "$BASE/containers")" ]; then
    echo "left in $BASE/containers: $(ls -A "$BASE/containers")" >&2
    return 1
  fi
}

# ctr_id NAME: the container's store id; crun knows it as hero-<id>
ctr_id() {
  sqlite3 "$BASE/hero.db" "SELECT id FROM containers WHERE instance='$INST' AND name='$1';"
}

# init_pid NAME: the pid of the container's init, from crun state
init_pid() {
  local id
  id=$(ctr_id "$1")
  [ -n "$id" ] || { echo "no container '$1' in the store" >&2; return 1; }
  "$CRUN" --root "$BASE/crun" state "hero-$id" | sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p'
}

alive() { # alive PID: exists and is not a zombie
  local s
  s=$(sed -n 's/^.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2> /dev/null) && [ -n "$s" ] && [ "$s" != Z ]
}

# dead PID: the process is gone (a function, because a bare `! cmd` never fails a
# bats test)
dead() {
  if alive "$1"; then
    echo "pid $1 still runs" >&2
    return 1
  fi
}

# cg_file PID CONTROLLER V1FILE V2FILE: the path of a cgroup file of the process,
# cgroup v1 (a hierarchy of the controller) or v2 (the unified hierarchy)
cg_file() {
  local pid=$1 ctl=$2 v1=$3 v2=$4 line path mnt
  line=$(grep -E "^[0-9]+:([^:]*,)?$ctl(,[^:]*)?:" "/proc/$pid/cgroup" | head -n 1)
  if [ -n "$line" ]; then
    path=${line#*:*:}
    mnt=$(fs_mounts cgroup | awk -v c="$ctl" '("," $2 ",") ~ ("," c ",") { print $1; exit }')
    echo "$mnt$path/$v1"
  else
    path=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
    mnt=$(fs_mounts cgroup2 | awk '{ print $1; exit }')
    echo "$mnt$path/$v2"
  fi
}

# fs_mounts FSTYPE: "mountpoint superoptions" of each mount of that type (the fields
# after mountinfo's " - " separator; optional fields before it vary)
fs_mounts() {
  awk -v t="$1" '{ for (i = 7; i < NF; i++) if ($i == "-") break
                   if ($(i + 1) == t) print $5, $(i + 3) }' /proc/self/mountinfo
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# first_error_is FILE LINE REGEX: stderr holds one diagnostic, at FILE:LINE, whose
# message (one line; the source line and a caret follow it) matches REGEX.
# ERR is set to that line. (The output of a failed command may come before it.)
first_error_is() {
  local n
  n=$(printf '%s\n' "${stderr_lines[@]}" | grep -c ': error: ' || true)
  [ "$n" -eq 1 ] || { echo "expected one error line on stderr, got $n" >&2; return 1; }
  ERR=$(printf '%s\n' "${stderr_lines[@]}" | grep ': error: ')
  local want="^$BASE/$1.hs:$2:[0-9]+: error: "
  [[ "$ERR" =~ $want ]] ||
    { echo "the error is not at $1.hs:$2: $ERR" >&2; return 1; }
  [[ "$ERR" =~ $3 ]] ||
    { echo "the error does not match /$3/: $ERR" >&2; return 1; }
}

# ---------------------------------------------------------------- lifecycle

@test "lifecycle: new, start, exec, stop, delete" {
  CTRS="life"
  pb up <<'EOF'
!!heropods.container_new name:'life' image:'embedded'
!!heropods.container_start name:'life' keep_alive:true
!!heropods.container_exec name:'life' cmd:'hostname; cat /proc/1/comm'
EOF
  hero_run up
  [ "$status" -eq 0 ]
  [ "$output" = $'life\n.hero-init' ]
  local id pid
  id=$(ctr_id life)
  [ -n "$id" ]
  pid=$(init_pid life)
  [ -n "$pid" ]
  alive "$pid"
  "$CRUN" --root "$BASE/crun" state "hero-$id" | grep -q '"status": "running"'
  [ "$(mounts_under)" = "$BASE/containers/$id/rootfs" ]
  [ -n "$(procs_under)" ]

  pb stop <<'EOF'
!!heropods.container_stop name:'life'
EOF
  hero_run stop
  [ "$status" -eq 0 ]
  dead "$pid"
  nothing_running
  [ -d "$BASE/containers/$id" ]     # stopped, not deleted: its root stays

  pb del <<'EOF'
!!heropods.container_delete name:'life'
EOF
  hero_run del
  [ "$status" -eq 0 ]
  [ ! -e "$BASE/containers/$id" ]
  [ -z "$(ctr_id life)" ]
  assert_clean
}

@test "keep_alive: an entrypoint that exits 0 leaves the container up for exec" {
  CTRS="ka"
  pb p <<'EOF'
!!heropods.container_new name:'ka' image:'embedded' cmd:['/bin/sh', '-c', 'echo set-up > /state']
!!heropods.container_start name:'ka' keep_alive:true
!!heropods.container_exec name:'ka' cmd:'cat /state; cat /proc/1/comm'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'set-up\n.hero-init' ]
  alive "$(init_pid ka)"
  assert_clean
}

@test "keep_alive: an entrypoint that exits non-zero fails the start with its code, and leaves nothing running" {
  CTRS="kafail"
  pb p <<'EOF'
!!heropods.container_new name:'kafail' image:'embedded' cmd:['/bin/sh', '-c', 'echo about to fail; exit 3']
!!heropods.container_start name:'kafail' keep_alive:true
!!heropods.container_exec name:'kafail' cmd:'echo not reached'
EOF
  hero_run p
  [ "$status" -eq 1 ]
  first_error_is p 3 'container_start failed: .*exited with code 3'
  [[ "$output" != *"not reached"* ]]
  nothing_running
  assert_clean
}

@test "keep_alive: an entrypoint still running at the timeout fails the start and is stopped" {
  CTRS="kaslow"
  pb p <<'EOF'
!!heropods.container_new name:'kaslow' image:'embedded' cmd:['/bin/sleep', '60']
!!heropods.container_start name:'kaslow' keep_alive:true timeout:1s
EOF
  local t0 t1
  t0=$(now_ms)
  hero_run p
  t1=$(now_ms)
  [ "$status" -eq 1 ]
  first_error_is p 3 'container_start failed: .*keep_alive timeout'
  [ $((t1 - t0)) -lt 10000 ]
  nothing_running
  assert_clean
}

# ---------------------------------------------------------------- exec

@test "exec: args run without a shell; cmd runs its pipes and redirects inside the container" {
  CTRS="ex"
  local marker="/hero-test-$$-$BATS_TEST_NUMBER"
  pb p <<EOF
!!heropods.container_new name:'ex' image:'embedded'
!!heropods.container_start name:'ex' keep_alive:true
!!heropods.container_exec name:'ex' args:['/bin/echo', '\$HOME', 'a | b', '*']
!!heropods.container_exec name:'ex' cmd:'echo a | tr a b'
!!heropods.container_exec name:'ex' cmd:'echo inside > $marker; cat $marker'
!!heropods.container_exec name:'ex' cmd:'echo not shown' stdout:false
!!heropods.container_exec name:'ex' cmd:'echo to-stderr >&2'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'$HOME a | b *\nb\ninside' ]
  [[ "$stderr" == *to-stderr* ]]
  [ ! -e "$marker" ]     # the redirect wrote inside the container, not on the host
  assert_clean
}

@test "exec: a non-zero exit fails the action with the code, unless ignore_error" {
  CTRS="code"
  pb ok <<'EOF'
!!heropods.container_new name:'code' image:'embedded'
!!heropods.container_start name:'code' keep_alive:true
!!heropods.container_exec name:'code' cmd:'echo before; exit 7' ignore_error:true
!!heropods.container_exec name:'code' args:['/bin/false'] ignore_error:true
!!heropods.container_exec name:'code' cmd:'echo after'
EOF
  hero_run ok
  [ "$status" -eq 0 ]
  [ "$output" = $'before\nafter' ]

  pb bad <<'EOF'
!!heropods.container_exec name:'code' cmd:'echo why >&2; exit 7'
!!heropods.container_exec name:'code' cmd:'echo not reached'
EOF
  hero_run bad
  [ "$status" -eq 1 ]
  first_error_is bad 2 'container_exec failed: .*code 7'
  [[ "$output" != *"not reached"* ]]

  pb bad2 <<'EOF'
!!heropods.container_exec name:'code' args:['/bin/sh', '-c', 'exit 42']
EOF
  hero_run bad2
  [ "$status" -eq 1 ]
  first_error_is bad2 2 'container_exec failed: .*code 42'
  assert_clean
}

@test "exec: env, workdir and user" {
  CTRS="envy"
  pb p <<'EOF'
!!heropods.container_new name:'envy' image:'embedded' env:['FROM_NEW=n1']
!!heropods.container_start name:'envy' keep_alive:true
!!heropods.container_exec name:'envy' args:['/bin/sh', '-c', 'echo "$FOO|$FROM_NEW"'] env:['FOO=bar baz']
!!heropods.container_exec name:'envy' cmd:'pwd' workdir:'/tmp'
!!heropods.container_exec name:'envy' cmd:'id -u; id -g' user:'nobody'
!!heropods.container_exec name:'envy' cmd:'id -u; pwd'
!!heropods.container_exec name:'envy' cmd:'echo "$X:$FROM_NEW:$PATH"' env:['X=1']
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'bar baz|n1\n/tmp\n65534\n65534\n0\n/\n1:n1:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' ]
  assert_clean
}

@test "exec: without user, the command runs as the container's user" {
  CTRS="nob"
  pb p <<'EOF'
!!heropods.container_new name:'nob' image:'embedded' user:'nobody'
!!heropods.container_start name:'nob' keep_alive:true
!!heropods.container_exec name:'nob' cmd:'id -u; id -g'
!!heropods.container_exec name:'nob' cmd:'id -u' user:'root'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'65534\n65534\n0' ]
  assert_clean
}

@test "exec: timeout fails the action and stops the command" {
  CTRS="slow"
  pb p <<'EOF'
!!heropods.container_new name:'slow' image:'embedded'
!!heropods.container_start name:'slow' keep_alive:true
!!heropods.container_exec name:'slow' cmd:'sleep 37' timeout:1s
EOF
  local t0 t1
  t0=$(now_ms)
  hero_run p
  t1=$(now_ms)
  [ "$status" -eq 1 ]
  first_error_is p 4 'container_exec failed: .*timed out'
  [ $((t1 - t0)) -lt 10000 ]
  # the command does not live on in the container
  sleep 0.2
  pb ps <<'EOF'
!!heropods.container_exec name:'slow' cmd:'ps -o pid,args'
EOF
  hero_run ps
  [ "$status" -eq 0 ]
  [[ "$output" != *"sleep 37"* ]]
  assert_clean
}

@test "exec: a command that leaves something running in the background is done when it exits" {
  CTRS="bg"
  pb p <<'EOF'
!!heropods.container_new name:'bg' image:'embedded'
!!heropods.container_start name:'bg' keep_alive:true
!!heropods.container_exec name:'bg' cmd:'sleep 29 & echo started'
!!heropods.container_exec name:'bg' cmd:'ps -o args'
EOF
  local t0 t1
  t0=$(now_ms)
  hero_run p
  t1=$(now_ms)
  [ "$status" -eq 0 ]
  [[ "$output" == "started"* ]]
  # the background sleep held the exec's output pipes: not waited for, but still running
  [[ "$output" == *"sleep 29"* ]]
  [ $((t1 - t0)) -lt 15000 ]
  assert_clean
}

@test "exec: output of several containers and execs at once comes in file order" {
  CTRS="oa ob oc"
  mkdir "$BASE/shared"
  # oa's and ob's first commands end only after oc's has run: they run at once, and
  # finish in the other order, yet their output is printed in file order
  local wait='for i in $(seq 200); do [ -e /shared/c1 ] && break; sleep 0.05; done'
  pb p <<EOF
!!heropods.container_new name:'oa' image:'embedded' mounts:['$BASE/shared:/shared']
!!heropods.container_new name:'ob' image:'embedded' mounts:['$BASE/shared:/shared']
!!heropods.container_new name:'oc' image:'embedded' mounts:['$BASE/shared:/shared']
!!heropods.container_start name:'oa' keep_alive:true
!!heropods.container_start name:'ob' keep_alive:true
!!heropods.container_start name:'oc' keep_alive:true
!!heropods.container_exec name:'oa' cmd:'$wait; sleep 0.2; test -e /shared/c1 && echo a1 after c1'
!!heropods.container_exec name:'ob' cmd:'$wait; test -e /shared/c1 && echo b1 after c1'
!!heropods.container_exec name:'oc' cmd:'echo c1; touch /shared/c1'
!!heropods.container_exec name:'oa' cmd:'echo a2'
!!heropods.container_exec name:'ob' cmd:'echo b2'
!!heropods.container_exec name:'oc' cmd:'echo c2'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'a1 after c1\nb1 after c1\nc1\na2\nb2\nc2' ]
  assert_clean
}

# ---------------------------------------------------------------- stop

@test "stop: a process that traps TERM exits cleanly; one that ignores it is killed after the timeout" {
  CTRS="trapper ignorer"
  mkdir "$BASE/shared"
  pb up <<EOF
!!heropods.container_new name:'trapper' image:'embedded' mounts:['$BASE/shared:/shared']
    cmd:['/bin/sh', '-c', 'trap "echo clean > /shared/trapper; exit 0" TERM; while :; do sleep 0.1; done']
!!heropods.container_new name:'ignorer' image:'embedded' mounts:['$BASE/shared:/shared']
    cmd:['/bin/sh', '-c', 'trap "echo clean > /shared/ignorer; exit 0" INT; trap "" TERM; while :; do sleep 0.1; done']
!!heropods.container_start name:'trapper'
!!heropods.container_start name:'ignorer'
EOF
  hero_run up
  [ "$status" -eq 0 ]
  local p1 p2 t0 t1
  p1=$(init_pid trapper)
  p2=$(init_pid ignorer)
  alive "$p1"
  alive "$p2"

  pb stop1 <<'EOF'
!!heropods.container_stop name:'trapper' timeout:10s
EOF
  t0=$(now_ms)
  hero_run stop1
  t1=$(now_ms)
  [ "$status" -eq 0 ]
  [ $((t1 - t0)) -lt 5000 ]            # did not wait for the grace period
  [ "$(cat "$BASE/shared/trapper")" = clean ]
  dead "$p1"

  pb stop2 <<'EOF'
!!heropods.container_stop name:'ignorer' timeout:2s
EOF
  t0=$(now_ms)
  hero_run stop2
  t1=$(now_ms)
  [ "$status" -eq 0 ]
  [ $((t1 - t0)) -ge 1900 ]            # the grace period was given
  [ $((t1 - t0)) -lt 8000 ]            # and then SIGKILL
  [ ! -e "$BASE/shared/ignorer" ]
  dead "$p2"
  nothing_running
  assert_clean
}

@test "stop: stopping a stopped container, or one never started, is fine" {
  CTRS="st never"
  pb p <<'EOF'
!!heropods.container_new name:'st' image:'embedded'
!!heropods.container_new name:'never' image:'embedded'
!!heropods.container_start name:'st' keep_alive:true
!!heropods.container_stop name:'st'
!!heropods.container_stop name:'st'
!!heropods.container_stop name:'never'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  nothing_running
  pb again <<'EOF'
!!heropods.container_stop name:'st'
EOF
  hero_run again
  [ "$status" -eq 0 ]
  assert_clean
}

@test "stop: a recorded pid that is no longer the container's init is never signalled" {
  CTRS="gone"
  # the entrypoint runs for a moment; without keep_alive the store says running
  pb up <<'EOF'
!!heropods.container_new name:'gone' image:'embedded' cmd:['/bin/sleep','1']
!!heropods.container_start name:'gone'
EOF
  hero_run up
  [ "$status" -eq 0 ]
  sleep 1.5
  # a host process takes the place of the dead init in the record (pid reuse)
  sleep 1000 &
  local victim=$!
  BG_PIDS="$BG_PIDS $victim"
  sqlite3 "$BASE/hero.db" "UPDATE containers SET pid=$victim, state='running' WHERE instance='$INST' AND name='gone';"
  pb down <<'EOF'
!!heropods.container_stop name:'gone' timeout:1s
EOF
  hero_run down
  [ "$status" -eq 0 ]
  kill -0 "$victim"          # still alive: hero did not signal it
  kill "$victim"
  assert_clean
}

# ---------------------------------------------------------------- roots

@test "two containers of one image do not see each other's writes" {
  CTRS="w1 w2 w3"
  pb p <<'EOF'
!!heropods.container_new name:'w1' image:'embedded'
!!heropods.container_new name:'w2' image:'embedded'
!!heropods.container_start name:'w1' keep_alive:true
!!heropods.container_start name:'w2' keep_alive:true
!!heropods.container_exec name:'w1' cmd:'echo one > /mine; rm /bin/ls; echo w1 wrote'
!!heropods.container_exec name:'w2' cmd:'test -e /mine && echo w2 sees it || echo w2 sees nothing; test -e /bin/ls && echo w2 has ls'
!!heropods.container_exec name:'w1' cmd:'cat /mine; test -e /bin/ls || echo w1 lost ls'
!!heropods.container_new name:'w3' image:'embedded'
!!heropods.container_start name:'w3' keep_alive:true
!!heropods.container_exec name:'w3' cmd:'test -e /mine && echo w3 sees it || echo w3 sees nothing; test -e /bin/ls && echo w3 has ls'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'w1 wrote\nw2 sees nothing\nw2 has ls\none\nw1 lost ls\nw3 sees nothing\nw3 has ls' ]
  assert_clean
}

@test "restart keeps the root" {
  CTRS="rs"
  pb up <<'EOF'
!!heropods.container_new name:'rs' image:'embedded'
!!heropods.container_start name:'rs' keep_alive:true
!!heropods.container_exec name:'rs' cmd:'echo kept > /persist'
EOF
  hero_run up
  [ "$status" -eq 0 ]
  local pid1 pid2
  pid1=$(init_pid rs)
  [ -n "$pid1" ]
  pb restart <<'EOF'
!!heropods.container_stop name:'rs'
!!heropods.container_start name:'rs' keep_alive:true
!!heropods.container_exec name:'rs' cmd:'cat /persist'
EOF
  hero_run restart
  [ "$status" -eq 0 ]
  [ "$output" = kept ]
  pid2=$(init_pid rs)
  [ -n "$pid2" ]
  [ "$pid2" != "$pid1" ]               # a new init: it was really stopped
  dead "$pid1"
  alive "$pid2"
  assert_clean
}

@test "starting a running container is a no-op" {
  CTRS="rr"
  pb up <<'EOF'
!!heropods.container_new name:'rr' image:'embedded'
!!heropods.container_start name:'rr' keep_alive:true
!!heropods.container_exec name:'rr' cmd:'echo in-memory-only > /dev/shm/mark'
EOF
  hero_run up
  [ "$status" -eq 0 ]
  local pid1
  pid1=$(init_pid rr)
  [ -n "$pid1" ]
  pb again <<'EOF'
!!heropods.container_start name:'rr' keep_alive:true
!!heropods.container_exec name:'rr' cmd:'cat /dev/shm/mark'
EOF
  hero_run again
  [ "$status" -eq 0 ]
  [ "$output" = in-memory-only ]       # the same running container, not a new one
  [ "$(init_pid rr)" = "$pid1" ]
  alive "$pid1"
  assert_clean
}

@test "limits are in the container's cgroup" {
  CTRS="lim"
  pb p <<'EOF'
!!heropods.container_new name:'lim' image:'embedded' memory:64M pids_limit:50 cpus:0.5
!!heropods.container_start name:'lim' keep_alive:true
EOF
  hero_run p
  [ "$status" -eq 0 ]
  local pid f
  pid=$(init_pid lim)
  [ -n "$pid" ]
  cat "/proc/$pid/cgroup" >&2
  f=$(cg_file "$pid" memory memory.limit_in_bytes memory.max)
  echo "memory: $f" >&2
  [ "$(cat "$f")" = 67108864 ]
  f=$(cg_file "$pid" pids pids.max pids.max)
  echo "pids: $f" >&2
  [ "$(cat "$f")" = 50 ]
  f=$(cg_file "$pid" cpu cpu.cfs_quota_us cpu.max)
  echo "cpu: $f" >&2
  case $f in
    */cpu.max) [ "$(cat "$f")" = "50000 100000" ] ;;
    *) [ "$(cat "$f")" = 50000 ]
       [ "$(cat "${f%/*}/cpu.cfs_period_us")" = 100000 ] ;;
  esac
  assert_clean
}

@test "two base dirs never share a cgroup (container ids are per store)" {
  # a second base dir whose store hands out the same ids as this test's
  CTRS="same"
  BASE2=$(mktemp -d /tmp/hero-ctr2.XXXXXX)
  local h2="!!heropods.configure name:'${INST}b' base_dir:'$BASE2' dns_servers:['127.0.0.1']"
  h2+=" bridge_name:'hc${BATS_TEST_NUMBER}q$$' nat:false subnet:'10.99.$(( $$ % 250 )).0/24'"
  printf '%s\n' "$h2" > "$BASE2/configure.hs"
  "$HERO" run "$BASE2/configure.hs"
  sqlite3 "$BASE2/hero.db" "INSERT INTO sqlite_sequence(name, seq) VALUES('containers', $SEQ);"
  printf '%s\n' "$h2" "!!heropods.container_new name:'same' image:'embedded' memory:48M" \
    "!!heropods.container_start name:'same' keep_alive:true" > "$BASE2/up.hs"
  printf '%s\n' "$h2" "!!heropods.container_delete name:'same'" > "$BASE2/down.hs"
  pb up <<'EOF'
!!heropods.container_new name:'same' image:'embedded' memory:32M
!!heropods.container_start name:'same' keep_alive:true
EOF
  hero_run up
  [ "$status" -eq 0 ]
  "$HERO" run "$BASE2/up.hs"
  local p1 p2 cg1 cg2
  p1=$(init_pid same)
  p2=$("$CRUN" --root "$BASE2/crun" state "hero-$(ctr_id same)" |
       sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p')
  [ -n "$p1" ]
  [ -n "$p2" ]
  cg1=$(cat "/proc/$p1/cgroup")
  cg2=$(cat "/proc/$p2/cgroup")
  echo "base 1: $cg1" >&2
  echo "base 2: $cg2" >&2
  [ "$cg1" != "$cg2" ]                 # each container has a cgroup of its own
  # the other's start did not change this one's limit
  [ "$(cat "$(cg_file "$p1" memory memory.limit_in_bytes memory.max)")" = 33554432 ]
  # deleting the other's container does not kill this one
  "$HERO" run "$BASE2/down.hs"
  sleep 0.2
  alive "$p1"
  [ -z "$(ls -A "$BASE2/containers")" ]
  assert_clean
}

# ---------------------------------------------------------------- delete

@test "delete leaves no crun container, mount, process, cgroup or directory" {
  CTRS="gone"
  pb up <<'EOF'
!!heropods.container_new name:'gone' image:'embedded' memory:32M
!!heropods.container_start name:'gone' keep_alive:true
EOF
  hero_run up
  [ "$status" -eq 0 ]
  local id pid cg
  id=$(ctr_id gone)
  pid=$(init_pid gone)
  cg=$(cg_file "$pid" memory memory.limit_in_bytes memory.max)
  cg=${cg%/*}
  [ -d "$cg" ]
  [ -n "$(crun_ids)" ]
  [ -n "$(mounts_under)" ]
  [ -n "$(procs_under)" ]
  pb del <<'EOF'
!!heropods.container_delete name:'gone'
EOF
  hero_run del
  [ "$status" -eq 0 ]
  dead "$pid"
  nothing_running
  [ ! -e "$BASE/containers/$id" ]
  [ -z "$(ls -A "$BASE/containers")" ]
  [ ! -d "$cg" ]
  [ -z "$(ctr_id gone)" ]
  assert_clean
}

@test "deleting a missing container is fine" {
  CTRS="ghost"
  pb p <<'EOF'
!!heropods.container_delete name:'ghost'
!!heropods.container_new name:'ghost' image:'embedded'
!!heropods.container_delete name:'ghost'
!!heropods.container_delete name:'ghost'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  assert_clean
}

@test "a start that fails midway (crun start fails after crun create) leaves nothing" {
  CTRS="mid"
  mkdir "$BASE/fakebin"
  cat > "$BASE/fakebin/crun" <<EOF
#!/bin/sh
# crun, except that 'crun start' fails
for a in "\$@"; do
  case \$a in
    -*) ;;
    start) echo "fake crun: start refused" >&2; exit 1 ;;
    *) break ;;
  esac
done
exec $CRUN "\$@"
EOF
  chmod +x "$BASE/fakebin/crun"
  pb p <<'EOF'
!!heropods.container_new name:'mid' image:'embedded'
!!heropods.container_start name:'mid' keep_alive:true
EOF
  run --separate-stderr env PATH="$BASE/fakebin:$PATH" "$HERO" run "$BASE/p.hs"
  printf '# %s\n' "${stderr_lines[@]}" >&2
  [ "$status" -eq 1 ]
  first_error_is p 3 'container_start failed: .*start refused'
  nothing_running
  # the definition stays, and the real crun starts it
  pb again <<'EOF'
!!heropods.container_start name:'mid' keep_alive:true
!!heropods.container_exec name:'mid' cmd:'echo up'
EOF
  hero_run again
  [ "$status" -eq 0 ]
  [ "$output" = up ]
  assert_clean
}

# ---------------------------------------------------------------- definitions

@test "the same playbook twice succeeds both times; the container is kept" {
  CTRS="twice"
  pb p <<'EOF'
!!heropods.container_new name:'twice' image:'embedded' memory:64M env:['A=1']
!!heropods.container_start name:'twice' keep_alive:true
!!heropods.container_exec name:'twice' cmd:'echo "$A"'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = 1 ]
  local id pid
  id=$(ctr_id twice)
  pid=$(init_pid twice)
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = 1 ]
  [ "$(ctr_id twice)" = "$id" ]
  [ "$(init_pid twice)" = "$pid" ]
  assert_clean
}

@test "a changed definition fails naming what differs; reset:true replaces it" {
  CTRS="chg"
  pb p <<'EOF'
!!heropods.container_new name:'chg' image:'embedded' memory:64M
!!heropods.container_start name:'chg' keep_alive:true
EOF
  hero_run p
  [ "$status" -eq 0 ]
  local id pid
  id=$(ctr_id chg)
  pid=$(init_pid chg)

  pb changed <<'EOF'
!!heropods.container_new name:'chg' image:'embedded' memory:128M
!!heropods.container_start name:'chg' keep_alive:true
EOF
  hero_run changed
  [ "$status" -eq 1 ]
  first_error_is changed 2 'container_new failed: .*memory'
  [[ "$ERR" == *reset* ]]
  [ "$(ctr_id chg)" = "$id" ]
  [ "$(init_pid chg)" = "$pid" ]      # the running container was not touched
  alive "$pid"

  pb reset <<'EOF'
!!heropods.container_new name:'chg' image:'embedded' memory:128M reset:true
!!heropods.container_start name:'chg' keep_alive:true
EOF
  hero_run reset
  [ "$status" -eq 0 ]
  local pid2
  pid2=$(init_pid chg)
  [ -n "$pid2" ]
  [ "$pid2" != "$pid" ]
  dead "$pid"
  [ "$(cat "$(cg_file "$pid2" memory memory.limit_in_bytes memory.max)")" = 134217728 ]
  # exactly one container of that name is left
  [ "$(crun_ids | wc -l)" -eq 1 ]
  [ "$(mounts_under | wc -l)" -eq 1 ]
  assert_clean
}

# ---------------------------------------------------------------- bad input

@test "bad input: an unknown image" {
  CTRS="badimg"
  pb p <<'EOF'
!!heropods.container_new name:'badimg' image:'no_such_image_here'
!!heropods.container_start name:'badimg'
EOF
  hero_run p
  [ "$status" -ne 0 ]
  first_error_is p 2 "no_such_image_here"
  [ -z "$(ctr_id badimg)" ]
  assert_clean
}

@test "bad input: a mount source that does not exist" {
  CTRS="badmnt"
  pb p <<EOF
!!heropods.container_new name:'badmnt' image:'embedded' mounts:['$BASE/not-there:/data']
!!heropods.container_start name:'badmnt'
EOF
  hero_run p
  [ "$status" -ne 0 ]
  first_error_is p 2 "$BASE/not-there.*does not exist"
  [ -z "$(ctr_id badmnt)" ]
  assert_clean
}

@test "bad input: an unparsable memory size" {
  CTRS="badmem"
  pb p <<'EOF'
!!heropods.container_new name:'badmem' image:'embedded' memory:'12Q'
!!heropods.container_start name:'badmem'
EOF
  hero_run p
  [ "$status" -eq 2 ]
  first_error_is p 2 "memory.*12Q"
  [ -z "$(ctr_id badmem)" ]
  assert_clean
}

@test "bad input: an entrypoint that does not exist in the image" {
  CTRS="badep"
  pb p <<'EOF'
!!heropods.container_new name:'badep' image:'embedded' entrypoint:['/usr/bin/no-such-program']
!!heropods.container_start name:'badep'
EOF
  hero_run p
  [ "$status" -ne 0 ]
  first_error_is p 2 "/usr/bin/no-such-program"
  [ -z "$(ctr_id badep)" ]
  assert_clean
}

@test "bad input: crun not installed" {
  CTRS="nocrun"
  pb p <<'EOF'
!!heropods.container_new name:'nocrun' image:'embedded'
!!heropods.container_start name:'nocrun' keep_alive:true
EOF
  run --separate-stderr env PATH=/nonexistent "$HERO" run "$BASE/p.hs"
  printf '# %s\n' "${stderr_lines[@]}" >&2
  [ "$status" -eq 1 ]
  first_error_is p 3 "crun"
  [[ "$ERR" == *"package crun"* ]]
  nothing_running
  assert_clean
}

@test "bad input: crun's 'cgroups in hybrid mode' refusal comes with the fix" {
  CTRS="hybrid"
  mkdir "$BASE/fakebin"
  cat > "$BASE/fakebin/crun" <<'EOF'
#!/bin/sh
echo "cgroups in hybrid mode not supported, drop all controllers from cgroupv2" >&2
exit 1
EOF
  chmod +x "$BASE/fakebin/crun"
  pb p <<'EOF'
!!heropods.container_new name:'hybrid' image:'embedded'
!!heropods.container_start name:'hybrid' keep_alive:true
EOF
  run --separate-stderr env PATH="$BASE/fakebin:$PATH" "$HERO" run "$BASE/p.hs"
  printf '# %s\n' "${stderr_lines[@]}" >&2
  [ "$status" -eq 1 ]
  first_error_is p 3 "cgroups in hybrid mode not supported"
  [[ "$ERR" == *"mkdir -p /sys/fs/cgroup/hugetlb"* ]]
  [[ "$ERR" == *"mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb"* ]]
  nothing_running
  assert_clean
}

# ---------------------------------------------------------------- a killed hero

@test "SIGKILL of hero in the middle of a 10-container playbook: cleanup and a rerun converge" {
  local i
  for i in $(seq 10); do CTRS="$CTRS k$i"; done
  {
    for i in $(seq 10); do
      echo "!!heropods.container_new name:'k$i' image:'embedded' memory:32M"
      echo "!!heropods.container_start name:'k$i' keep_alive:true"
      echo "!!heropods.container_exec name:'k$i' cmd:'sleep 1; echo k$i'"
      echo "!!heropods.container_stop name:'k$i'"
      echo "!!heropods.container_delete name:'k$i'"
    done
  } | pb p
  local want
  want=$(seq 10 | sed 's/^/k/')

  kill_midway
  # a cleanup run removes everything the killed run made
  assert_clean

  # and the playbook itself converges
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = "$want" ]
  nothing_running

  # killed again, then rerun without a cleanup in between
  kill_midway
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = "$want" ]
  assert_clean
}

# kill_midway: runs playbook p in the background and SIGKILLs it (by its pid) about
# 0.5 s in, once it has containers up; checks that it was killed with work left
kill_midway() {
  "$HERO" run "$BASE/p.hs" > "$BASE/killed.out" 2>&1 3>&- &
  local pid=$! i rc=0
  BG_PIDS="$pid"
  sleep 0.3
  for i in $(seq 100); do
    [ -z "$(crun_ids)" ] || break
    sleep 0.05
  done
  sleep 0.2
  kill -KILL "$pid"
  wait "$pid" || rc=$?
  BG_PIDS=""
  local ncrun nmnt
  ncrun=$(crun_ids | wc -l)
  nmnt=$(mounts_under | wc -l)
  echo "# killed (status $rc) with $ncrun crun containers and $nmnt mounts" >&2
  [ "$rc" -eq 137 ] || { echo "hero was not killed midway: status $rc" >&2; return 1; }
  [ "$ncrun" -gt 0 ] || [ "$nmnt" -gt 0 ] ||
    { echo "nothing was up when hero was killed" >&2; return 1; }
}
