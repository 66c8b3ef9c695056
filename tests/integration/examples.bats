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

@test "the offline example (make demo) runs" {
  run "$HERO" run "$EX/hello.heroscript"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == "hello, world"* ]]
}
