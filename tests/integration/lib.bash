# Helpers the container, network and image tests share (`load lib`). A test file
# sets HERO, CRUN, BASE (the test's base dir), HDR (its configure line) and CTRS
# (the containers it made, for teardown).

# pb NAME: writes $BASE/NAME.hs: the configure line (line 1), then stdin. So the
# first action of stdin is on line 2.
pb() {
  { printf '%s\n' "$HDR"; cat; } > "$BASE/$1.hs"
}

# hero_run NAME [ARGS...]: runs playbook NAME; $status, $output, $stderr as bats's run.
hero_run() {
  local f=$1
  shift
  run --separate-stderr "$HERO" run "$@" "$BASE/$f.hs"
  echo "# hero run $f.hs: status $status" >&2
  [ -z "$output" ] || printf '# stdout: %s\n' "${lines[@]}" >&2
  [ -z "$stderr" ] || printf '# stderr: %s\n' "${stderr_lines[@]}" >&2
}

# fails COMMAND...: COMMAND fails (a bare `! cmd` never fails a bats test)
fails() {
  if "$@"; then
    echo "expected to fail: $*" >&2
    return 1
  fi
}

# write_cleanup: $BASE/cleanup.hs, hero's own deletion of every container in $CTRS
write_cleanup() {
  local c
  { printf '%s\n' "$HDR"; for c in $CTRS; do echo "!!heropods.container_delete name:'$c'"; done; } \
    > "$BASE/cleanup.hs"
}

# force_remove DIR: whatever hero left of a base dir of this test: its own crun
# root's containers, mounts under it, then the directory (never through a mount)
force_remove() {
  local dir=$1 id m
  [ -d "$dir" ] || return 0
  if [ -d "$dir/crun" ]; then
    for id in $("$CRUN" --root "$dir/crun" list -q 2> /dev/null); do
      "$CRUN" --root "$dir/crun" delete -f "$id" > /dev/null 2>&1 || true
    done
  fi
  for m in $(awk -v b="$dir" 'index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo |
             sort -r); do
    umount -l "$m" 2> /dev/null || true
  done
  awk -v b="$dir" 'index($5, b "/") == 1 { found = 1 } END { exit found }' /proc/self/mountinfo &&
    rm -rf "$dir"
}
