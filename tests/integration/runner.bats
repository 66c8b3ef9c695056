#!/usr/bin/env bats
# The runner end to end: exit codes, file order, concurrency, failures, signals.
# Uses only core.* actions, so no root is needed.

setup() {
  HERO=${HERO:-$BATS_TEST_DIRNAME/../../build/hero}
  T=$(mktemp -d)
}

teardown() {
  rm -rf "$T"
}

pb() { # pb NAME: the playbook read from stdin, written to $T/NAME
  cat > "$T/$1"
}

now_ms() {
  echo $(( $(date +%s%N) / 1000000 ))
}

@test "a valid playbook runs and exits 0; output in file order" {
  pb a.heroscript <<'EOF'
!!core.echo msg:'one'
!!core.sleep duration:200ms
!!core.echo two
!!core.echo msg:"three"
EOF
  run "$HERO" run "$T/a.heroscript"
  [ "$status" -eq 0 ]
  [ "$output" = $'one\ntwo\nthree' ]
}

@test "output stays in file order although a later action finishes first" {
  pb a.heroscript <<'EOF'
!!core.sleep duration:300ms resources:a
!!core.echo msg:'after the sleep in the file' resources:b
!!core.echo msg:'last' resources:c
EOF
  run "$HERO" run -v "$T/a.heroscript"
  [ "$status" -eq 0 ]
  # the echo shares nothing with the sleep: it starts at once, but prints second
  [[ "$output" == *"[2/3] core.echo"*"started"*"[1/3] core.sleep"*"ok"* ]]
  out=$("$HERO" run "$T/a.heroscript" 2>/dev/null)
  [ "$out" = $'after the sleep in the file\nlast' ]
}

@test "independent actions overlap; -j 1 runs them one at a time" {
  pb a.heroscript <<'EOF'
!!core.sleep duration:400ms resources:a
!!core.sleep duration:400ms resources:b
!!core.sleep duration:400ms resources:c
EOF
  s=$(now_ms); run "$HERO" run "$T/a.heroscript"; e=$(now_ms)
  [ "$status" -eq 0 ]
  echo "parallel: $((e - s)) ms"
  [ $((e - s)) -lt 1000 ]
  s=$(now_ms); run "$HERO" run -j 1 "$T/a.heroscript"; e=$(now_ms)
  local one=$((e - s))
  echo "-j 1: $one ms"
  [ "$one" -ge 1150 ]
  s=$(now_ms); run "$HERO" run -j 2 "$T/a.heroscript"; e=$(now_ms)
  echo "-j 2: $((e - s)) ms"
  [ $((e - s)) -ge 780 ]
  # two at a time saves one sleep of the three (less on a loaded machine, never none)
  [ $((e - s)) -lt $((one - 200)) ]
}

@test "actions sharing a resource run one after the other" {
  pb a.heroscript <<'EOF'
!!core.sleep duration:300ms resources:x
!!core.sleep duration:300ms resources:x,y
!!core.sleep duration:300ms resources:y
EOF
  s=$(now_ms); run "$HERO" run "$T/a.heroscript"; e=$(now_ms)
  [ "$status" -eq 0 ]
  echo "$((e - s)) ms"
  [ $((e - s)) -ge 880 ]
}

@test "the plan: containers serialise per name, share their instance and image" {
  pb a.heroscript <<'EOF'
!!heropods.configure name:lab
!!heropods.container_new name:a image:embedded
!!heropods.container_new name:b image:embedded
!!heropods.container_start name:a
!!heropods.configure name:other
!!heropods.container_start name:a
EOF
  run "$HERO" run --dry-run "$T/a.heroscript"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"2. heropods.container_new"*"touches: instance:lab (shared) container:lab/a image:embedded (shared)"*"after: 1"*"3. heropods.container_new"* ]]
  [[ "$output" == *"4. heropods.container_start"*"after: 1 2"*"5. heropods.configure"* ]]
  # the last start belongs to the instance configured last
  [[ "$output" == *"6. heropods.container_start"*"container:other/a"*"after: 5" ]]
}

@test "a failing action stops the playbook: exit 1, its location, later actions not run" {
  pb a.heroscript <<'EOF'
!!core.echo msg:first
!!core.fail msg:'the guard tripped'
!!core.echo msg:never
EOF
  run "$HERO" run -j 1 "$T/a.heroscript"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"first"* ]]
  [[ "$output" == *"a.heroscript:2:1: error: core.fail failed: the guard tripped"* ]]
  [[ "$output" != *"never"* ]]
  [[ "$output" == *"1 action failed; 1 not run"* ]]
}

@test "a failure lets running actions finish, and starts nothing new" {
  pb a.heroscript <<'EOF'
!!core.sleep duration:300ms resources:a
!!core.fail msg:boom resources:b
!!core.echo msg:'waits for the sleep, so never starts' resources:a
EOF
  s=$(now_ms); run "$HERO" run "$T/a.heroscript"; e=$(now_ms)
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"core.fail failed: boom"* ]]
  [[ "$output" != *"never starts"$'\n'* ]]
  [ $((e - s)) -ge 280 ]
}

@test "--keep-going runs what does not depend on the failure, skips what does" {
  pb a.heroscript <<'EOF'
!!core.fail msg:boom resources:x
!!core.echo msg:'depends on x' resources:x
!!core.echo msg:'independent' resources:y
EOF
  run "$HERO" run --keep-going -v "$T/a.heroscript"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"independent"* ]]
  [[ "$output" == *"[2/3] core.echo"*"skipped (a prerequisite failed)"* ]]
  out=$("$HERO" run --keep-going "$T/a.heroscript" 2>/dev/null || true)
  [ "$out" = "independent" ]
}

@test "SIGINT cancels a running sleep at once and exits 1" {
  pb a.heroscript <<'EOF'
!!core.sleep duration:30s resources:a
!!core.echo msg:never resources:a
EOF
  "$HERO" run "$T/a.heroscript" > "$T/out" 2> "$T/err" &
  pid=$!
  sleep 0.3
  s=$(now_ms)
  kill -INT "$pid"
  rc=0; wait "$pid" || rc=$?
  e=$(now_ms)
  cat "$T/err"
  [ "$rc" -eq 1 ]
  [ $((e - s)) -lt 2000 ]
  grep -q "interrupted" "$T/err"
  ! grep -q never "$T/out"
}

@test "SIGTERM does the same" {
  pb a.heroscript <<'EOF'
!!core.sleep duration:30s
EOF
  "$HERO" run "$T/a.heroscript" 2> "$T/err" &
  pid=$!
  sleep 0.3
  kill -TERM "$pid"
  rc=0; wait "$pid" || rc=$?
  [ "$rc" -eq 1 ]
  grep -q "interrupted" "$T/err"
}

@test "--check validates and runs nothing" {
  pb a.heroscript <<'EOF'
!!core.echo msg:'must not print'
!!heropods.configure name:lab subnet:10.89.0.0/24
EOF
  run "$HERO" run --check "$T/a.heroscript"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
}

@test "a validation error anywhere: exit 2, every error reported, nothing runs" {
  pb a.heroscript <<'EOF'
!!core.echo msg:'must not print'
!!core.sleep duration:5
!!core.echoo msg:x
!!heropods.container_new name:c memory:lots
EOF
  run "$HERO" run "$T/a.heroscript"
  echo "$output"
  [ "$status" -eq 2 ]
  [[ "$output" != *"must not print"* ]]
  [[ "$output" == *"a.heroscript:2:23: error: duration: '5': a duration needs a unit"* ]]
  [[ "$output" == *"a.heroscript:3:8: error: unknown action 'core.echoo' (did you mean core.echo?)"* ]]
  [[ "$output" == *"a.heroscript:4:40: error: memory: 'lots'"* ]]
  [[ "$output" == *"3 errors; nothing ran"* ]]
}

@test "an error in an included file names that file" {
  mkdir -p "$T/sub"
  pb sub/inc.heroscript <<'EOF'
!!core.sleep duration:xx
EOF
  pb a.heroscript <<'EOF'
!!play.include path:'sub/inc.heroscript'
EOF
  run "$HERO" run "$T/a.heroscript"
  echo "$output"
  [ "$status" -eq 2 ]
  [[ "$output" == *"sub/inc.heroscript:1:23: error: duration"* ]]
}

@test "enable_mycelium's peers are checked before anything runs, with their place" {
  pb a.heroscript <<'EOF'
!!heropods.enable_mycelium version:'0.7.0' ipv6_range:'400::/7' key_path:'/nonexistent/key'
    peers:['tcp://127.0.0.1:9651', 'quic://[2001:db8::1]:9651']
EOF
  run "$HERO" run --check "$T/a.heroscript"
  [ "$status" -eq 0 ]
  pb b.heroscript <<'EOF'
!!heropods.enable_mycelium version:'0.7.0' ipv6_range:'400::/7' key_path:'/nonexistent/key'
    peers:['tcp://127.0.0.1:9651', 'tcp://2001:db8::1:9651', 'udp://1.2.3.4:1']
EOF
  run "$HERO" run "$T/b.heroscript"
  echo "$output"
  [ "$status" -eq 2 ]
  [[ "$output" == *"b.heroscript:2:"*"an IPv6 peer address goes in brackets"* ]]
  [[ "$output" == *"a peer's scheme is tcp, quic or tls"* ]]
  [[ "$output" == *"nothing ran"* ]]
}

@test "usage errors exit 2" {
  run "$HERO" run
  [ "$status" -eq 2 ]
  run "$HERO" run -j 0 x.heroscript
  [ "$status" -eq 2 ]
  run "$HERO" frobnicate
  [ "$status" -eq 2 ]
  run "$HERO" run "$T/does-not-exist.heroscript"
  [ "$status" -eq 2 ]
  [[ "$output" == *"cannot read"*"No such file or directory"* ]]
}

@test "a playbook with #!/usr/bin/env hero runs as a program" {
  mkdir -p "$T/bin"
  ln -s "$HERO" "$T/bin/hero"
  pb lab.heroscript <<'EOF'
#!/usr/bin/env hero
!!core.echo msg:'from the shebang'
EOF
  chmod +x "$T/lab.heroscript"
  PATH="$T/bin:$PATH" run "$T/lab.heroscript"
  [ "$status" -eq 0 ]
  [ "$output" = "from the shebang" ]
}

@test "hero --version, --help, actions and help" {
  run "$HERO" --version
  [ "$status" -eq 0 ]
  [[ "$output" == "hero "[0-9]* ]]
  run "$HERO" --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"usage: hero run"* ]]
  run "$HERO" actions
  [[ "$output" == *"heropods.container_new"* ]]
  [[ "$output" == *"core.echo"* ]]
  run "$HERO" help heropods.container_exec
  [ "$status" -eq 0 ]
  [[ "$output" == *"ignore_error"*"bool"*"false"* ]]
  run "$HERO" help heropods.nope
  [ "$status" -eq 2 ]
}

@test "hero fmt -w rewrites in place; --check names files that are not canonical" {
  pb a.heroscript <<'EOF'
!!core.echo   msg:"hello"
EOF
  run "$HERO" fmt --check "$T/a.heroscript"
  [ "$status" -eq 1 ]
  [ "$output" = "$T/a.heroscript" ]
  run "$HERO" fmt -w "$T/a.heroscript"
  [ "$status" -eq 0 ]
  [ "$(cat "$T/a.heroscript")" = "!!core.echo msg:hello" ]
  run "$HERO" fmt --check "$T/a.heroscript"
  [ "$status" -eq 0 ]
}

@test "no event-loop handle or memory is left behind (valgrind)" {
  command -v valgrind >/dev/null || skip "valgrind is not installed"
  pb a.heroscript <<'EOF'
!!core.echo msg:one
!!core.sleep duration:100ms resources:a
!!core.fail msg:boom resources:b
!!core.sleep duration:50ms resources:a
EOF
  run valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
    "$HERO" run --keep-going "$T/a.heroscript"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" != *"open handles"* ]]
  run valgrind -q --leak-check=full --error-exitcode=99 "$HERO" run "$T/missing.heroscript"
  [ "$status" -eq 2 ]
}

@test "interrupting under valgrind still closes the loop cleanly" {
  command -v valgrind >/dev/null || skip "valgrind is not installed"
  pb a.heroscript <<'EOF'
!!core.sleep duration:30s resources:a
!!core.sleep duration:30s resources:b
EOF
  valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
    "$HERO" run -v "$T/a.heroscript" 2> "$T/err" &
  pid=$!
  # interrupt once the actions run (valgrind takes a while to get there)
  local i
  for i in $(seq 1 300); do
    grep -q "started" "$T/err" 2> /dev/null && break
    sleep 0.1
  done
  kill -INT "$pid"
  rc=0; wait "$pid" || rc=$?
  cat "$T/err"
  [ "$rc" -eq 1 ]
  ! grep -q "open handles" "$T/err"
}
