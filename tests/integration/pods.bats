#!/usr/bin/env bats
# `hero pods` from a second process, over the state store, against real crun
# containers: ps, inspect, logs, exec, stats, start, stop, rm, images. Needs root.
#
# Each test has its own base dir (under a mktemp dir) and its own instance, bridge
# name and subnet, and deletes its containers in teardown through a playbook.

bats_require_minimum_version 1.5.0

setup() {
  [ "$(id -u)" -eq 0 ] || skip "needs root: runs containers on crun"
  command -v crun >/dev/null || skip "needs crun (make deps)"
  [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] ||
    skip "makes bridges and rules: run it in a private network namespace (tests/in-netns bats ...; tests/run does)"
  HERO=${HERO:-$BATS_TEST_DIRNAME/../../build/hero}
  [ -x "$HERO" ] || { echo "$HERO missing: run make" >&2; return 1; }
  T=$(mktemp -d)
  BASE=$T/base
  INST=pods$$t$BATS_TEST_NUMBER
  # this test's own bridge and subnet, no NAT, no outside DNS server: nothing may
  # leave the machine
  local n=$(( ($$ + BATS_TEST_NUMBER) % 200 + 20 ))
  NET="bridge_name:hp${n}t$BATS_TEST_NUMBER subnet:10.$n.$BATS_TEST_NUMBER.0/24 nat:false dns_servers:127.0.0.1"
  NETB="bridge_name:hp${n}b$BATS_TEST_NUMBER subnet:10.$n.$((BATS_TEST_NUMBER + 100)).0/24 nat:false dns_servers:127.0.0.1"
  BGPIDS=""
  : > "$T/ctrs"
}

# Deletes the test's containers (listed in $T/ctrs as "INSTANCE NAME") with a
# playbook; then nothing of them may be left: no crun container, no mount.
teardown() {
  [ -n "${T:-}" ] || return 0
  local p rc=0 inst name
  for p in $BGPIDS; do
    kill "$p" 2>/dev/null || true
  done
  if [ -e "$BASE/hero.db" ]; then
    while read -r inst name; do
      echo "!!heropods.container_delete name:$name heropods:$inst"
    done < "$T/ctrs" > "$T/cleanup.hs"
    if [ -s "$T/cleanup.hs" ]; then
      HERO_BASE_DIR=$BASE "$HERO" run -q "$T/cleanup.hs" || rc=1
    fi
    local left
    left=$(crun --root "$BASE/crun" list -q)
    if [ -n "$left" ]; then
      echo "teardown: crun containers left under $BASE/crun: $left" >&2
      rc=1
    fi
  fi
  if grep -q " $BASE/" /proc/self/mountinfo; then
    echo "teardown: mounts left under $BASE; $T is kept" >&2
    return 1
  fi
  rm -rf "$T"
  return $rc
}

# play LINES...: runs a playbook of this test's instance made of the lines
play() {
  {
    echo "!!heropods.configure name:$INST base_dir:'$BASE' $NET"
    printf '%s\n' "$@"
  } > "$T/play.hs"
  "$HERO" run "$T/play.hs"
}

# new_line NAME ARGS...: a container_new line (the container is remembered for
# teardown; this runs in $(...), so through a file)
new_line() {
  echo "$INST $1" >> "$T/ctrs"
  local n=$1
  shift
  echo "!!heropods.container_new name:$n image:embedded $*"
}

# gone PID: no such process, or a zombie waiting to be reaped
gone() {
  local pid comm state rest
  ! read -r pid comm state rest < "/proc/$1/stat" 2>/dev/null || [ "$state" = Z ]
}

pods() {
  "$HERO" pods --base-dir "$BASE" "$@"
}

# json_check JSON PYTHON-EXPR: the expression (over `d`, the parsed JSON) is true;
# without python3 only that JSON looks like an array of objects with "name"
json_check() {
  if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
      "$1" "$2"
  else
    [[ "$1" == "["*"\"name\":"*"]" ]]
  fi
}

# wait_for CMD...: until CMD succeeds, at most 10 s
wait_for() {
  local i
  for i in $(seq 100); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

@test "ps from a second process shows running containers, -a also stopped and exited ones" {
  run play "$(new_line up cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "$(new_line down cmd:"['/bin/sh','-c','trap \"exit 7\" TERM; sleep 1000 & wait']")" \
    "$(new_line brief cmd:"['/bin/sh','-c','sleep 1; exit 3']")" \
    "$(new_line never)" \
    "!!heropods.container_start name:up" \
    "!!heropods.container_start name:down" \
    "!!heropods.container_start name:brief" \
    "!!heropods.container_stop name:down"
  echo "$output"
  [ "$status" -eq 0 ]

  run pods ps
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "${lines[0]}" == "CONTAINER ID"*"NAME"*"INSTANCE"*"IMAGE"*"COMMAND"*"CREATED"*"STATUS"*"PID" ]]
  [[ "$output" == *" up "*"Up "* ]]
  [[ "$output" != *" down "* ]]
  [[ "$output" != *" never "* ]]

  # brief's entrypoint ends on its own after 1 s: the store still says running,
  # ps sees its init gone and shows it exited with hero-init's status
  wait_for sh -c "! '$HERO' pods --base-dir '$BASE' ps | grep -q ' brief '"
  run pods ps -a
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *" down "*"Exited (7) "*" ago"* ]]
  [[ "$output" == *" brief "*"Exited (3) "* ]]
  [[ "$output" == *" never "*"Created"* ]]
  [[ "$output" == *" up "*"Up "* ]]
  # ps only reads: the store still has brief as running
  [ "$(sqlite3 "$BASE/hero.db" "select state from containers where name='brief'" 2>/dev/null || echo running)" = running ]
}

@test "ps --json is an array of objects with stable fields" {
  run play "$(new_line j1 cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "$(new_line j2 cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "!!heropods.container_start name:j1"
  [ "$status" -eq 0 ]
  run pods ps --json
  echo "$output"
  [ "$status" -eq 0 ]
  json_check "$output" 'len(d) == 1 and d[0]["name"] == "j1" and d[0]["state"] == "running" and d[0]["pid"] > 0 and d[0]["instance"] == "'"$INST"'" and d[0]["image"] == "embedded" and d[0]["exit_code"] is None and d[0]["created"].endswith("Z")'
  run pods ps -a --json
  [ "$status" -eq 0 ]
  json_check "$output" 'sorted(x["name"] for x in d) == ["j1", "j2"] and [x["state"] for x in d if x["name"] == "j2"] == ["created"] and all(k in d[0] for k in ("id","name","instance","image","state","pid","exit_code","created","started","finished"))'
  # the same through HERO_BASE_DIR and --instance
  run env HERO_BASE_DIR="$BASE" "$HERO" pods --instance "$INST" ps --format json
  [ "$status" -eq 0 ]
  json_check "$output" '[x["name"] for x in d] == ["j1"]'
  run pods --instance nosuch ps -a --json
  [ "$status" -eq 0 ]
  [ "$output" = "[]" ]
}

@test "inspect shows the record, the definition, the paths and crun's live state" {
  run play "$(new_line insp cmd:"['/bin/sh','-c','exec sleep 1000']" memory:64M)" \
    "!!heropods.container_start name:insp"
  [ "$status" -eq 0 ]
  run pods inspect insp
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"name:"*"insp"* ]]
  [[ "$output" == *"state:"*"running"* ]]
  [[ "$output" == *"crun_id:"*"hero-"* ]]
  [[ "$output" == *"rootfs:"*"$BASE/containers/"*"/rootfs"* ]]
  [[ "$output" == *"crun_state:"*'"status":"running"'* ]]
  run pods inspect --json "$INST/insp"
  [ "$status" -eq 0 ]
  json_check "$output" 'len(d) == 1 and d[0]["name"] == "insp" and d[0]["cgroup"].startswith("/hero/") and d[0]["crun_state"]["status"] == "running" and d[0]["crun_state"]["pid"] == d[0]["pid"] and d[0]["spec"]["memory"] and d[0]["log"].startswith("'"$BASE"'/containers/") and d[0]["crun_id"] == "hero-%d" % d[0]["id"]'
  run pods inspect nosuch
  [ "$status" -eq 1 ]
  [[ "$output" == "hero pods: no such container 'nosuch'"* ]]
}

@test "logs prints what the entrypoint wrote; -f follows until the container stops" {
  run play "$(new_line lg cmd:"['/bin/sh','-c','echo hello-log; exec sleep 1000']")" \
    "!!heropods.container_start name:lg"
  [ "$status" -eq 0 ]
  wait_for grep -q hello-log "$BASE"/containers/*/log
  run pods logs lg
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "hello-log" ]

  pods logs -f lg > "$T/follow" 2>&1 3>&- &
  local fpid=$!
  BGPIDS="$BGPIDS $fpid"
  wait_for grep -q hello-log "$T/follow"
  run pods exec lg -- /bin/sh -c 'echo second-line >> /proc/1/fd/1'
  [ "$status" -eq 0 ]
  wait_for grep -q second-line "$T/follow"
  run pods stop -t 2s lg
  [ "$status" -eq 0 ]
  # the init exited: logs -f ends by itself, with success
  local s=0
  wait_for sh -c "! kill -0 $fpid 2>/dev/null"
  wait "$fpid" || s=$?
  [ "$s" -eq 0 ]
  [ "$(cat "$T/follow")" = "$(printf 'hello-log\nsecond-line')" ]
}

@test "exec runs a command in the container and passes its exit status" {
  run play "$(new_line ex cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "$(new_line idle)" \
    "!!heropods.container_start name:ex"
  [ "$status" -eq 0 ]
  run pods exec ex -- cat /etc/hostname
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "ex" ]
  run pods exec ex /bin/sh -c 'exit 5'
  [ "$status" -eq 5 ]
  # without -i the command reads nothing; with -i it gets hero's stdin
  run bash -c "echo piped | '$HERO' pods --base-dir '$BASE' exec ex cat"
  [ "$status" -eq 0 ]
  [ "$output" = "" ]
  run bash -c "echo piped | '$HERO' pods --base-dir '$BASE' exec -i ex cat"
  [ "$status" -eq 0 ]
  [ "$output" = "piped" ]
  run pods exec idle -- true
  [ "$status" -eq 1 ]
  [[ "$output" == *"not running"* ]]
  run pods exec ex
  [ "$status" -eq 2 ]
}

@test "exec runs the command as the container's user" {
  run play "$(new_line usr user:nobody cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "!!heropods.container_start name:usr"
  [ "$status" -eq 0 ]
  run pods exec usr -- id -u
  [ "$status" -eq 0 ]
  [ "$output" = "65534" ]
}

@test "exec -it gives the command a terminal" {
  command -v script >/dev/null || skip "needs script (util-linux) for a terminal"
  run play "$(new_line tt cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "!!heropods.container_start name:tt"
  [ "$status" -eq 0 ]
  run env TERM=xterm-test timeout 20 script -qec "'$HERO' pods --base-dir '$BASE' exec -it tt /bin/sh -c 'test -t 0 && test -t 1 && echo on-a-tty; echo \"T=\$TERM P=\$PATH\"'" /dev/null
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"on-a-tty"* ]]
  # TERM is passed on, and the container's own environment is kept with it
  [[ "$output" == *"T=xterm-test P=/usr/local/sbin:"* ]]
}

@test "stats reports CPU percent of a busy container and memory in use" {
  run play "$(new_line busy cmd:"['/bin/sh','-c','while :; do :; done']" memory:64M)" \
    "$(new_line calm cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "!!heropods.container_start name:busy" \
    "!!heropods.container_start name:calm"
  [ "$status" -eq 0 ]
  run pods stats --json --interval 1s busy calm
  echo "$output"
  [ "$status" -eq 0 ]
  json_check "$output" '[x["name"] for x in d] == ["busy", "calm"] and d[0]["cpu_percent"] > 20 and d[0]["mem_usage"] > 0 and d[0]["mem_limit"] == 64 * 1024 * 1024 and 0 < d[0]["mem_percent"] < 100 and d[0]["pids"] >= 1 and d[1]["cpu_percent"] < 20 and d[1]["mem_limit"] is None'
  run pods stats busy
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "${lines[0]}" == "ID"*"NAME"*"CPU %"*"MEM USAGE / LIMIT"*"MEM %"*"PIDS" ]]
  [[ "${lines[1]}" == *" busy "*"%"*" / 67.1 MB"* ]]
  run pods stop -t 1s calm
  [ "$status" -eq 0 ]
  run pods stats calm
  [ "$status" -eq 1 ]
  [[ "$output" == *"not running"* ]]
}

@test "stop and start through hero pods" {
  run play "$(new_line ss cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "!!heropods.container_start name:ss"
  [ "$status" -eq 0 ]
  local pid1
  pid1=$(pods inspect --json ss | grep -m1 '"pid"' | tr -dc 0-9)
  [ "$pid1" -gt 0 ]
  run pods stop --timeout 1s ss
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "ss" ]
  # the init is gone (the host's init may take a moment to reap it)
  wait_for gone "$pid1"
  run pods ps
  [[ "$output" != *" ss "* ]]
  run pods ps -a
  [[ "$output" == *" ss "*"Exited (143) "* ]]
  [ -z "$(crun --root "$BASE/crun" list -q)" ]

  run pods start ss
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "ss" ]
  run pods ps
  [[ "$output" == *" ss "*"Up "* ]]
  run pods exec ss -- cat /etc/hostname
  [ "$output" = "ss" ]
  # starting a running container does nothing
  local pid2
  pid2=$(pods inspect --json ss | grep -m1 '"pid"' | tr -dc 0-9)
  run pods start ss
  [ "$status" -eq 0 ]
  [ "$(pods inspect --json ss | grep -m1 '"pid"' | tr -dc 0-9)" = "$pid2" ]
}

@test "rm refuses a running container without -f; rm -f leaves nothing behind" {
  run play "$(new_line gone cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "!!heropods.container_start name:gone"
  [ "$status" -eq 0 ]
  local id
  id=$(pods ps --json | grep -m1 '"id"' | tr -dc 0-9)
  [ -d "$BASE/containers/$id" ]
  run pods rm gone
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == "hero pods: container 'gone' is running"* ]]
  [[ "$(pods ps)" == *" gone "* ]]

  run pods rm -f gone
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "gone" ]
  [ -z "$(crun --root "$BASE/crun" list -q)" ]
  [ "$(grep -c "$BASE" /proc/self/mountinfo)" -eq 0 ]
  [ ! -e "$BASE/containers/$id" ]
  run pods ps -a
  [[ "$output" != *" gone "* ]]
  run pods rm gone
  [ "$status" -eq 1 ]
}

@test "rm of a stopped container needs no -f" {
  run play "$(new_line st cmd:"['/bin/sh','-c','exec sleep 1000']")" \
    "!!heropods.container_start name:st" \
    "!!heropods.container_stop name:st timeout:1s"
  [ "$status" -eq 0 ]
  run pods rm st
  echo "$output"
  [ "$status" -eq 0 ]
  [ -z "$(pods ps -a --json | grep '"name"')" ]
}

@test "a name used by two instances needs INSTANCE/NAME" {
  run play "$(new_line twin cmd:"['/bin/sh','-c','exec sleep 1000']")"
  [ "$status" -eq 0 ]
  echo "${INST}b twin" >> "$T/ctrs"
  {
    echo "!!heropods.configure name:${INST}b base_dir:'$BASE' $NETB"
    echo "!!heropods.container_new name:twin image:embedded"
  } > "$T/b.hs"
  run "$HERO" run "$T/b.hs"
  [ "$status" -eq 0 ]
  run pods inspect twin
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"more than one instance"* ]]
  run pods inspect --json "${INST}b/twin"
  [ "$status" -eq 0 ]
  json_check "$output" 'd[0]["instance"] == "'"$INST"'b"'
  run pods --instance "$INST" inspect --json twin
  [ "$status" -eq 0 ]
  json_check "$output" 'd[0]["instance"] == "'"$INST"'"'
}

@test "images lists the embedded image with its size and users" {
  run play "$(new_line im)"
  [ "$status" -eq 0 ]
  run pods images
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "${lines[0]}" == "NAME"*"DIGEST"*"CREATED"*"SIZE"*"CONTAINERS" ]]
  [[ "${lines[1]}" == "embedded "*" MB "*"1" || "${lines[1]}" == "embedded "*" kB "*"1" ]]
  run pods images --json
  [ "$status" -eq 0 ]
  json_check "$output" 'd[0]["name"] == "embedded" and d[0]["size"] > 0 and d[0]["containers"] == 1 and d[0]["digest"].startswith("sha256:")'
}

@test "usage errors exit 2; help exits 0; an empty base dir is not created" {
  run pods
  [ "$status" -eq 2 ]
  run pods frobnicate
  [ "$status" -eq 2 ]
  [[ "$output" == *"unknown command 'frobnicate'"* ]]
  run pods ps --bogus
  [ "$status" -eq 2 ]
  run pods stop -t soon x
  [ "$status" -eq 2 ]
  run pods --help
  [ "$status" -eq 0 ]
  [[ "$output" == "usage: hero pods"* ]]
  for c in ps inspect logs exec stats start stop rm images; do
    run pods "$c" --help
    [ "$status" -eq 0 ]
    [[ "$output" == "usage: hero pods $c"* ]]
  done
  run pods ps
  [ "$status" -eq 0 ]
  [ "$output" = "$(printf 'CONTAINER ID  NAME  INSTANCE  IMAGE  COMMAND  CREATED  STATUS  PID')" ]
  run pods logs nothing
  [ "$status" -eq 1 ]
  [ ! -e "$BASE" ]
}
