#!/usr/bin/env bats
# Every example playbook validates; the offline one runs.

setup() {
  HERO=${HERO:-$BATS_TEST_DIRNAME/../../build/hero}
  EX=$BATS_TEST_DIRNAME/../../examples
}

@test "every example validates (hero run --check)" {
  for f in "$EX"/*.heroscript; do
    run "$HERO" run --check "$f"
    echo "$f: $output"
    [ "$status" -eq 0 ]
  done
}

@test "every example is in canonical form except for its own layout choices" {
  for f in "$EX"/*.heroscript; do
    # fmt of fmt is fmt, and fmt keeps the meaning
    a=$("$HERO" fmt "$f")
    b=$(printf '%s\n' "$a" | "$HERO" fmt /dev/stdin)
    [ "$a" = "$b" ]
    [ "$("$HERO" dump "$f")" = "$(printf '%s\n' "$a" | "$HERO" dump /dev/stdin)" ]
  done
}

@test "the runner example (core actions only) runs without root" {
  run "$HERO" run "$EX/runner.heroscript"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == "hello, world"* ]]
}

@test "the offline example (make demo) runs, and leaves nothing behind" {
  [ "$(id -u)" = 0 ] || skip "containers need root"
  command -v crun >/dev/null || skip "crun is not installed"
  [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] ||
    skip "makes bridges and rules: run it in a private network namespace (tests/in-netns bats ...; tests/run does)"
  base=$(mktemp -d)
  HERO_BASE_DIR=$base run "$HERO" run "$EX/hello.heroscript"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == "hello from a container: hello"* ]]
  [[ "$output" == *"pid 1 is .hero-init"* ]]
  [ -z "$(crun --root "$base/crun" list -q)" ]
  run grep -q " $base" /proc/self/mountinfo
  [ "$status" -ne 0 ]
  [ -z "$(ls -A "$base/containers")" ]
  # twice in a row: it converges
  HERO_BASE_DIR=$base run "$HERO" run "$EX/hello.heroscript"
  [ "$status" -eq 0 ]
  HERO_BASE_DIR=$base run "$HERO" run "$EX/lab.heroscript"
  echo "$output"
  [ "$status" -eq 0 ]
  rm -rf "$base"
}
