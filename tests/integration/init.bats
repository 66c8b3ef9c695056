#!/usr/bin/env bats
# hero-init as PID 1 of a fresh PID namespace: exit status, the status files, signal
# forwarding, zombie reaping, keep-alive. Needs root (unshare --pid --mount-proc).

bats_require_minimum_version 1.5.0

setup() {
  [ "$(id -u)" -eq 0 ] || skip "needs root: hero-init is tested as PID 1 of a new PID namespace"
  command -v unshare >/dev/null || skip "needs unshare (util-linux)"
  HERO_INIT=${HERO_INIT:-$BATS_TEST_DIRNAME/../../build/hero-init}
  [ -x "$HERO_INIT" ] || { echo "$HERO_INIT missing: run make build/hero-init" >&2; return 1; }
  T=$(mktemp -d)
  PIDS=""
}

teardown() {
  local p
  for p in $PIDS; do
    kill -KILL "$p" 2>/dev/null || true
  done
  [ -z "${T:-}" ] || rm -rf "$T"
}

# in_ns ARGS...: hero-init ARGS as PID 1 of a new PID namespace; a hang fails the test
in_ns() {
  timeout 10 unshare --pid --fork --mount-proc "$HERO_INIT" "$@"
}

# start_bg ARGS...: like in_ns, in the background with output in $T/out;
# sets UNSHARE_PID and INIT_PID (hero-init as seen from here).
# IGNORED="SIG..." starts hero-init with those signals ignored, as a shell may.
start_bg() {
  if [ -n "${IGNORED:-}" ]; then
    sh -c 'trap "" $0; exec "$@"' "$IGNORED" \
      unshare --pid --fork --mount-proc "$HERO_INIT" "$@" > "$T/out" 2>&1 3>&- &
  else
    unshare --pid --fork --mount-proc "$HERO_INIT" "$@" > "$T/out" 2>&1 3>&- &
  fi
  UNSHARE_PID=$!
  PIDS="$PIDS $UNSHARE_PID"
  INIT_PID=""
  local i
  for i in $(seq 100); do
    INIT_PID=$(pgrep -P "$UNSHARE_PID") && break
    sleep 0.05
  done
  [ -n "$INIT_PID" ]
  PIDS="$INIT_PID $PIDS"
}

# wait_file FILE: until FILE exists, at most 5 s
wait_file() {
  local i
  for i in $(seq 100); do
    [ -e "$1" ] && return 0
    sleep 0.05
  done
  echo "timed out waiting for $1" >&2
  return 1
}

# running PID: PID exists and is not a zombie (kill -0 succeeds on zombies)
running() {
  local pid comm state rest
  read -r pid comm state rest < "/proc/$1/stat" 2>/dev/null && [ "$state" != Z ]
}

# wait_exit PID: PID's exit status in $status (PID must be a child of this shell);
# fails if PID still runs after 5 s
wait_exit() {
  local i
  for i in $(seq 100); do
    running "$1" || break
    sleep 0.05
  done
  if running "$1"; then
    echo "pid $1 still runs after 5 s" >&2
    return 1
  fi
  status=0
  wait "$1" || status=$?
}

@test "the entrypoint's exit code is passed through and recorded" {
  run in_ns --status-dir "$T" -- /bin/sh -c 'exit 7'
  [ "$status" -eq 7 ]
  [ "$(cat "$T/status")" = "exited 7" ]
  [ ! -e "$T/status.tmp" ]
}

@test "PROGRAM is looked up in PATH and gets its arguments unchanged" {
  run in_ns --status-dir "$T" -- sh -c 'printf "[%s]" "$@"' zero 'a b' '' c
  [ "$status" -eq 0 ]
  [ "$output" = "[a b][][c]" ]
  [ "$(cat "$T/status")" = "exited 0" ]
}

@test "an entrypoint killed by a signal gives 128+signo and 'signaled'" {
  run in_ns --status-dir "$T" -- sh -c 'kill -9 $$'
  [ "$status" -eq 137 ]
  [ "$(cat "$T/status")" = "signaled 9" ]
}

@test "exec of a missing program gives 127 and exec-failed with errno 2" {
  run -127 in_ns --status-dir "$T" -- /nonexistent arg
  [[ "$(cat "$T/status")" == "exec-failed 2 "*" /nonexistent" ]]
  [ ! -e "$T/started" ]   # started means the entrypoint runs
}

@test "exec of a non-executable file gives 126 and exec-failed with errno 13" {
  printf '#!/bin/sh\nexit 0\n' > "$T/script"
  chmod 0644 "$T/script"
  run in_ns --status-dir "$T" -- "$T/script"
  [ "$status" -eq 126 ]
  [[ "$(cat "$T/status")" == "exec-failed 13 "*" $T/script" ]]
}

@test "started holds the entrypoint's pid" {
  run in_ns --status-dir "$T" -- sh -c 'echo $$'
  [ "$status" -eq 0 ]
  [[ "$output" =~ ^[0-9]+$ ]]
  [ "$(cat "$T/started")" = "pid $output" ]
  [ ! -e "$T/started.tmp" ]
}

@test "without --status-dir no file is written" {
  run in_ns -- sh -c 'exit 5'
  [ "$status" -eq 5 ]
  [ -z "$(ls -A "$T")" ]
}

@test "bad usage exits 125" {
  run "$HERO_INIT" --no-such-option -- true
  [ "$status" -eq 125 ]
  run "$HERO_INIT" --status-dir "$T"
  [ "$status" -eq 125 ]
  run "$HERO_INIT" --status-dir "$T/missing" -- true
  [ "$status" -eq 125 ]
}

@test "SIGTERM sent to hero-init is forwarded to the entrypoint" {
  start_bg --status-dir "$T" -- sh -c \
    "trap 'echo got-term; exit 3' TERM; : > '$T/ready'; while :; do sleep 0.1; done"
  wait_file "$T/ready"
  kill -TERM "$INIT_PID"
  wait_exit "$UNSHARE_PID"
  [ "$status" -eq 3 ]
  grep -qx got-term "$T/out"
  [ "$(cat "$T/status")" = "exited 3" ]
}

@test "any other signal, a real-time one too, is forwarded to the entrypoint" {
  start_bg --status-dir "$T" -- bash -c \
    "trap 'echo got-pwr' PWR; trap 'echo got-rt; exit 6' RTMIN+3; : > '$T/ready'; while :; do sleep 0.1; done"
  wait_file "$T/ready"
  kill -s PWR "$INIT_PID"
  sleep 0.3
  kill -s RTMIN+3 "$INIT_PID"
  wait_exit "$UNSHARE_PID"
  [ "$status" -eq 6 ]
  grep -qx got-pwr "$T/out"
  grep -qx got-rt "$T/out"
}

@test "signals ignored by hero-init's parent are reset and forwarded" {
  # a shell cannot trap a signal it was started with ignored
  IGNORED="INT QUIT" start_bg --status-dir "$T" -- sh -c \
    "trap 'echo got-quit; exit 4' QUIT; : > '$T/ready'; while :; do sleep 0.1; done"
  local ign   # the precondition: hero-init inherited SIGQUIT (3) ignored
  ign=$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$UNSHARE_PID/status")
  (( (16#$ign >> 2) & 1 ))
  wait_file "$T/ready"
  kill -QUIT "$INIT_PID"
  wait_exit "$UNSHARE_PID"
  [ "$status" -eq 4 ]
  grep -qx got-quit "$T/out"
}

@test "orphans that exit are reaped: no zombie in the namespace" {
  # the subshells exit at once, so each sleep is reparented to hero-init
  run in_ns --status-dir "$T" -- sh -c '
    (sleep 0.2 &); (sleep 0.2 &); (sleep 0.2 &)
    sleep 1
    n=0
    for f in /proc/[0-9]*/stat; do
      read -r pid comm state rest < "$f" 2>/dev/null || continue
      [ "$state" = Z ] && n=$((n + 1))
    done
    echo "zombies=$n"'
  [ "$status" -eq 0 ]
  [ "$output" = "zombies=0" ]
}

@test "--keep-alive with exit 0 stays up, then exits 0 on SIGTERM" {
  start_bg --keep-alive --status-dir "$T" -- sh -c 'exit 0'
  wait_file "$T/status"
  [ "$(cat "$T/status")" = "exited 0" ]
  sleep 0.5
  running "$INIT_PID"
  kill -TERM "$INIT_PID"
  wait_exit "$UNSHARE_PID"
  [ "$status" -eq 0 ]
}

@test "--keep-alive with exit 0 ends on any stop signal (SIGRTMIN+3), not on SIGWINCH or SIGTSTP" {
  start_bg --keep-alive --status-dir "$T" -- sh -c 'exit 0'
  wait_file "$T/status"
  kill -s WINCH "$INIT_PID"
  kill -s TSTP "$INIT_PID"
  sleep 0.3
  running "$INIT_PID"
  kill -s RTMIN+3 "$INIT_PID"
  wait_exit "$UNSHARE_PID"
  [ "$status" -eq 0 ]
}

@test "--keep-alive keeps reaping processes started after the entrypoint ended" {
  start_bg --keep-alive --status-dir "$T" -- sh -c 'exit 0'
  wait_file "$T/status"
  # what `crun exec` does: a process joins the namespace as a child of the joiner;
  # here it daemonizes, so its child is reparented to hero-init and must be reaped
  nsenter --target "$INIT_PID" --pid --mount -- sh -c '(sleep 0.2 &)'
  sleep 0.6
  local zombies
  zombies=$(nsenter --target "$INIT_PID" --pid --mount -- sh -c '
    n=0
    for f in /proc/[0-9]*/stat; do
      read -r pid comm state rest < "$f" 2>/dev/null || continue
      [ "$state" = Z ] && n=$((n + 1))
    done
    echo $n')
  [ "$zombies" -eq 0 ]
  running "$INIT_PID"
  kill -TERM "$INIT_PID"
  wait_exit "$UNSHARE_PID"
  [ "$status" -eq 0 ]
}

@test "--keep-alive with exit 4 exits 4 at once" {
  run in_ns --keep-alive --status-dir "$T" -- sh -c 'exit 4'
  [ "$status" -eq 4 ]
  [ "$(cat "$T/status")" = "exited 4" ]
}

@test "--keep-alive with a signal-killed entrypoint exits 128+signo" {
  run in_ns --keep-alive --status-dir "$T" -- sh -c 'kill -15 $$'
  [ "$status" -eq 143 ]
  [ "$(cat "$T/status")" = "signaled 15" ]
}
