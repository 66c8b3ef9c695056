#!/usr/bin/env bats
# Images from real registries on loopback: image_pull (OCI and Docker manifests, an
# index, zstd, whiteouts, shared layers, the podman path, a registries: mirror),
# image_import / image_export / image_delete, `hero pods images`, containers on
# pulled images, and what a registry serving wrong or hostile content gets.
#
# One docker-registry for the whole file (setup_file: tests/fixtures/registry.bash),
# on 127.0.0.1 inside the private network namespace tests/run gives the suite
# (tests/in-netns); its images are built with umoci and pushed with skopeo once, and
# the crafted ones (hostile tars, blobs later overwritten) are uploaded with curl.
# Every test has its own base dir (mktemp), instance, bridge name and subnet; its
# containers use dns_servers 127.0.0.1. No name is looked up and nothing is fetched
# outside the machine: docker.io references resolve through a registries: mirror entry
# to the loopback registry. Processes are only killed by the pid recorded when they
# were started.

bats_require_minimum_version 1.5.0

load ../fixtures/registry
load lib

# ---------------------------------------------------------------- file set-up

# setup_file cannot skip in bats 1.8 (it fails the file): it leaves the reason in
# IMG_SKIP and every test skips with it
setup_file() {
  export IMG_SKIP=""
  if [ "$(id -u)" -ne 0 ]; then
    IMG_SKIP="needs root: containers run on real crun"; return 0
  fi
  if [ "$(readlink /proc/self/ns/net)" = "$(readlink /proc/1/ns/net)" ]; then
    IMG_SKIP="makes bridges and a registry: run it in a private network namespace (tests/in-netns bats ...; tests/run does)"
    return 0
  fi
  local missing
  missing=$(registry_tools_missing)
  if [ -n "$missing" ]; then
    IMG_SKIP="needs $missing (make deps)"; return 0
  fi
  export FILE_TMP
  FILE_TMP=$(mktemp -d /tmp/hero-imgs.XXXXXX)
  export REG_CACHE=$FILE_TMP/bbroot
  registry_start "$FILE_TMP" || return 1
  export REG REG_PORT REG_DIR REG_PID REG_LOG
  export OUTSIDE=$FILE_TMP/outside    # what hostile layers aim at
  mkdir -p "$OUTSIDE"
  echo secret > "$OUTSIDE/secret"
  export HOST_ARCH OTHER_ARCH
  case $(uname -m) in
    x86_64) HOST_ARCH=amd64 OTHER_ARCH=arm64 ;;
    aarch64) HOST_ARCH=arm64 OTHER_ARCH=amd64 ;;
    *) HOST_ARCH=$(uname -m) OTHER_ARCH=amd64 ;;
  esac
  # the crafted layers (curl) while umoci and skopeo build and push the rest
  fixture_raw > "$FILE_TMP/fixture_raw.log" 2>&1 &
  local raw=$! rc=0
  # (in the background too: `set -e` inside would be ignored under `||`)
  fixture_images > "$FILE_TMP/fixture_images.log" 2>&1 &
  wait $! ||
    { echo "setup_file: fixture_images failed:"; sed 's/^/  /' "$FILE_TMP/fixture_images.log"; rc=1; } >&2
  wait "$raw" ||
    { echo "setup_file: fixture_raw failed:"; sed 's/^/  /' "$FILE_TMP/fixture_raw.log"; rc=1; } >&2
  [ "$rc" -eq 0 ] || return 1
  export OUTSIDE_LIST
  OUTSIDE_LIST=$(outside_state)
}

# every image made with umoci, in one layout ($FILE_TMP/oci, also used by the tests),
# all on one busybox layer (bb) so that it is compressed once
fixture_images() {
  set -e
  local L=$FILE_TMP/oci a t
  image_build_busybox "$L:bb"
  # the plain busybox image, as OCI, Docker v2s2 and zstd
  image_push "$L:bb" "$REG/test/bb:latest"
  image_push "$L:bb" "$REG/test/v2s2:latest" --format v2s2
  skopeo copy -q --dest-compress-format zstd "oci:$L:bb" "oci:$FILE_TMP/zstd:bb" > /dev/null
  image_push "$FILE_TMP/zstd:bb" "$REG/test/zstd:latest"

  # what the docker.io mirror serves
  image_tag "$L:bb" mirror
  marker_layer "$L:mirror" from-the-mirror
  for t in library/alpine:3.20 library/ubuntu:24.04 library/ubuntu:25.04; do
    image_push "$L:mirror" "$REG/$t"
  done

  # two platforms, and an index of both (the other platform first; arm64 with the
  # variant v8, as Docker Hub's indexes have it)
  for a in "$HOST_ARCH" "$OTHER_ARCH"; do
    image_tag "$L:bb" "$a"
    marker_layer "$L:$a" "arch-$a"
    umoci config --image "$L:$a" --os linux --architecture "$a"
    image_push "$L:$a" "$REG/test/multi:$a"
  done
  push_index test/multi latest "$OCI_INDEX" \
    "$(manifest_digest "test/multi:$OTHER_ARCH") linux $OTHER_ARCH $([ "$OTHER_ARCH" = arm64 ] && echo v8)" \
    "$(manifest_digest "test/multi:$HOST_ARCH") linux $HOST_ARCH" > /dev/null

  # whiteouts and an opaque directory: files of 512 bytes, so that umoci's layers
  # lose no padding (see image_build_busybox)
  local w=$FILE_TMP/wh
  mkdir -p "$w/l2/gonedir" "$w/l2/opq" "$w/l5"
  head -c 512 /dev/zero | tr '\0' g > "$w/l2/gone"
  head -c 512 /dev/zero | tr '\0' x > "$w/l2/gonedir/x"
  head -c 512 /dev/zero | tr '\0' a > "$w/l2/opq/a"
  head -c 512 /dev/zero | tr '\0' b > "$w/l2/opq/b"
  head -c 512 /dev/zero | tr '\0' c > "$w/l5/c"
  image_tag "$L:bb" wh
  umoci insert --image "$L:wh" "$w/l2" /
  umoci insert --image "$L:wh" --whiteout /gone
  umoci insert --image "$L:wh" --whiteout /gonedir
  umoci insert --image "$L:wh" --opaque "$w/l5" /opq
  image_push "$L:wh" "$REG/test/wh:latest"

  # two images on the bb layer, each with a layer of its own
  for a in sa sb; do
    mkdir -p "$FILE_TMP/$a/$a"
    head -c 262144 /dev/urandom > "$FILE_TMP/$a/$a/data"
    image_tag "$L:bb" "$a"
    umoci insert --image "$L:$a" "$FILE_TMP/$a/$a" "/$a"
    image_push "$L:$a" "$REG/test/$a:latest"
  done

  # an image whose StopSignal is SIGUSR1: its entrypoint stops cleanly on it only
  image_tag "$L:bb" stopsig
  umoci config --image "$L:stopsig" --config.stopsignal SIGUSR1 \
    --config.cmd /bin/sh --config.cmd -c \
    --config.cmd 'trap "echo stopped-by-usr1; exit 0" USR1; trap "" TERM; while :; do sleep 0.1; done'
  image_push "$L:stopsig" "$REG/test/stopsig:latest"
  # ... and one whose StopSignal is a real-time signal, named as systemd images name it
  # (busybox's trap knows it by number only: SIGRTMIN+3 is 37 with glibc and docker)
  image_tag "$L:bb" stoprt
  umoci config --image "$L:stoprt" --config.stopsignal SIGRTMIN+3 \
    --config.cmd /bin/sh --config.cmd -c \
    --config.cmd 'trap "echo stopped-by-rtmin3; exit 0" 37; trap "" TERM; while :; do sleep 0.1; done'
  image_push "$L:stoprt" "$REG/test/stoprt:latest"

  # a layer as umoci insert really writes it: the last file's padding cut off
  mkdir -p "$FILE_TMP/trunc"
  printf 'odd' > "$FILE_TMP/trunc/odd"
  image_tag "$L:bb" trunc
  umoci insert --image "$L:trunc" "$FILE_TMP/trunc/odd" /odd
  image_push "$L:trunc" "$REG/test/trunc:latest"
}

# marker_layer LAYOUT:NAME TEXT: a layer with /etc/marker holding TEXT. The layer ends
# with an empty directory, so that umoci's tar loses nothing (see image_build_busybox)
marker_layer() {
  local d
  d=$(mktemp -d "$FILE_TMP/marker.XXXXXX")
  chmod 755 "$d"
  mkdir -p "$d/etc" "$d/zzz-end"
  echo "$2" > "$d/etc/marker"
  umoci insert --image "$1" "$d" /
}

# hostile layers, crafted and uploaded with curl
fixture_raw() {
  set -e
  local k
  for k in dotdot absolute symlink hardlink hardlink-abs; do
    hostile_layer "$k" "$OUTSIDE" "$FILE_TMP/hostile-$k.tar"
    push_raw_image "test/evil-$k" latest "$FILE_TMP/hostile-$k.tar"
  done
}

teardown_file() {
  registry_stop
  [ -z "${FILE_TMP:-}" ] || rm -rf "$FILE_TMP"
}

# ---------------------------------------------------------------- test set-up

setup() {
  [ -z "$IMG_SKIP" ] || skip "$IMG_SKIP"
  CRUN=$(command -v crun) || skip "needs crun (Debian package crun)"
  command -v sqlite3 > /dev/null || skip "needs sqlite3 (make deps) to read container ids"
  if [ -s /sys/fs/cgroup/unified/cgroup.controllers ]; then
    skip "crun refuses this machine's hybrid cgroups: make cgroup-fix"
  fi
  HERO=${HERO:-$BATS_TEST_DIRNAME/../../build/hero}
  HERO=$(cd "$(dirname "$HERO")" && pwd)/$(basename "$HERO")
  [ -x "$HERO" ] || { echo "$HERO missing: run make build/hero build/hero-init" >&2; return 1; }
  BASE=$(mktemp -d /tmp/hero-img.XXXXXX)
  N=$BATS_TEST_NUMBER
  INST="im${N}p$$"
  BR="hi${N}p$$"
  BR=${BR:0:15}
  CTRS=""
  RF_PID="" PA="" PB=""
  PODMAN_DIR=""
  unset HERO_CONFIG
  set_hdr
}

# set_hdr [EXTRA...]: the configure line every playbook of the test starts with
set_hdr() {
  HDR="!!heropods.configure name:'$INST' base_dir:'$BASE' dns_servers:['127.0.0.1']"
  HDR+=" bridge_name:'$BR' nat:false subnet:'10.$(( 60 + N % 40 )).$(( $$ % 250 )).0/24' $*"
}

teardown() {
  # the test's own background processes still running (a pid already waited for is not
  # one of its jobs any more, and is left alone)
  local p
  for p in ${PA:-} ${PB:-} ${RF_PID:-}; do
    if jobs -p | grep -qx "$p"; then
      kill "$p" 2> /dev/null
      wait "$p" 2> /dev/null || true
    fi
  done
  [ -n "${BASE:-}" ] || return 0
  if [ -d "$BASE" ] && [ -n "$CTRS" ]; then
    write_cleanup
    "$HERO" run "$BASE/cleanup.hs" > /dev/null 2>&1 || true
  fi
  if [ -n "$PODMAN_DIR" ] && [ -d "$PODMAN_DIR" ]; then
    podman rm -af -t 0 > /dev/null 2>&1 || true
    podman rmi -af > /dev/null 2>&1 || true
  fi
  force_remove "$BASE"
  ip link del "$BR" 2> /dev/null || true
}

# ---------------------------------------------------------------- helpers

# first_error_is FILE LINE REGEX: stderr holds one diagnostic, at FILE:LINE, whose
# message matches REGEX; ERR is set to that line
first_error_is() {
  local n
  n=$(printf '%s\n' "${stderr_lines[@]}" | grep -c ': error: ' || true)
  [ "$n" -eq 1 ] || { echo "expected one error line on stderr, got $n" >&2; return 1; }
  ERR=$(printf '%s\n' "${stderr_lines[@]}" | grep ': error: ')
  local want="^$BASE/$1.hs:$2:[0-9]+: error: "
  [[ "$ERR" =~ $want ]] || { echo "the error is not at $1.hs:$2: $ERR" >&2; return 1; }
  [[ "$ERR" =~ $3 ]] || { echo "the error does not match /$3/: $ERR" >&2; return 1; }
  # a reason said once (an error copied along must not gain its strerror again)
  local twice=': ([^:]+): \1$'
  if [[ "$ERR" =~ $twice ]]; then echo "the error repeats '${BASH_REMATCH[1]}': $ERR" >&2; return 1; fi
}

hex() { echo "${1#sha256:}"; }

# layer_dir DIFF_ID / blob_file DIGEST: where the store keeps them
layer_dir() { echo "$BASE/images/layers/$(hex "$1")"; }
blob_file() { echo "$BASE/images/blobs/sha256/$(hex "$1")"; }

# have_layers REPO:TAG: every layer of the image is extracted in the store (one dir
# per diff_id), and every blob of its manifest is stored
have_layers() {
  local d
  for d in $(image_diff_ids "$1"); do
    [ -d "$(layer_dir "$d")" ] || { echo "no layer dir for $d of $1" >&2; return 1; }
  done
  for d in $(manifest_layers "$1") $(manifest_config "$1"); do
    [ -f "$(blob_file "$d")" ] || { echo "no blob $d of $1" >&2; return 1; }
  done
}

# blobs_verify: every stored blob's sha256 is its name
blobs_verify() {
  local f n=0
  [ -d "$BASE/images/blobs/sha256" ] || return 0
  for f in "$BASE/images/blobs/sha256"/*; do
    [ -f "$f" ] || continue
    [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$(basename "$f")" ] ||
      { echo "stored blob $f does not match its digest" >&2; return 1; }
    n=$((n + 1))
  done
  echo "# $n stored blobs verified" >&2
}

# images_json: `hero pods images --json` of this base dir
images_json() {
  "$HERO" pods --base-dir "$BASE" images --json
}

# has_image NAME: `hero pods images` lists it (table and JSON)
has_image() {
  local t j
  t=$("$HERO" pods --base-dir "$BASE" images) || return 1
  j=$(images_json) || return 1
  awk -v n="$1" 'NR > 1 && $1 == n { f = 1 } END { exit !f }' <<< "$t" ||
    { echo "hero pods images does not list $1:" >&2; echo "$t" >&2; return 1; }
  grep -Eq "\"name\": *\"$1\"" <<< "$j" ||
    { echo "hero pods images --json does not list $1" >&2; return 1; }
}

no_image() {
  local t
  t=$("$HERO" pods --base-dir "$BASE" images) || return 1
  if awk -v n="$1" 'NR > 1 && $1 == n { f = 1 } END { exit !f }' <<< "$t"; then
    echo "hero pods images still lists $1:" >&2
    echo "$t" >&2
    return 1
  fi
}

# log_mark: the access log's length now; log_since MARK: the lines after it
log_mark() { wc -l < "$REG_LOG"; }
log_since() { tail -n +"$(( $1 + 1 ))" "$REG_LOG"; }
# blob_gets_since MARK [DIGEST]: blob GETs answered with data since MARK
blob_gets_since() {
  log_since "$1" | grep -cE "\"GET /v2/[^ ]*/blobs/${2:-sha256:}[^ ]* HTTP/[0-9.]+\" (200|206) " || true
}

# the pull summary line hero prints off a terminal (no rate when nothing was fetched)
pulled_re() {
  local r=${1//./\\.}
  echo "^pulled $r: [0-9]+ layers?( \([0-9]+ already present\))?, [0-9.]+ [kMG]?B in [0-9.]+ s( \([0-9.]+ [kMG]?B/s\))?\$"
}

# ctr_id NAME: the container's store id (its root is $BASE/containers/ID/rootfs)
ctr_id() {
  sqlite3 "$BASE/hero.db" "SELECT id FROM containers WHERE instance='$INST' AND name='$1';"
}

# root_lowerdirs NAME: the lowerdir option of the container's root overlay
root_lowerdirs() {
  local id
  id=$(ctr_id "$1")
  [ -n "$id" ] || { echo "no container $1" >&2; return 1; }
  awk -v m="$BASE/containers/$id/rootfs" '$5 == m {
      for (i = 7; i < NF; i++) if ($i == "-") break
      if ($(i + 1) != "overlay") { print "not-overlay"; exit }
      n = split($(i + 3), o, ",")
      for (j = 1; j <= n; j++) if (o[j] ~ /^lowerdir=/) print substr(o[j], 10)
    }' /proc/self/mountinfo
}

# outside_state: what hostile layers must not change (names, link counts, contents)
outside_state() {
  (cd "$OUTSIDE" && find . -printf '%p %y %n %s\n' | sort && cat secret)
}

nothing_outside() {
  local now
  now=$(outside_state)
  [ "$now" = "$OUTSIDE_LIST" ] ||
    { echo "something changed in $OUTSIDE:"; diff <(echo "$OUTSIDE_LIST") <(echo "$now"); } >&2
  [ "$now" = "$OUTSIDE_LIST" ]
}

# ---------------------------------------------------------------- pulls

# layer_list REPO:TAG N: `tar -tv` of the image's Nth layer (from 1), names as stored
layer_list() {
  local l
  l=$(manifest_layers "$1" | sed -n "$2p")
  blob_get "${1%%[:@]*}" "$l" | gzip -dc | tar -tvPf - 2> /dev/null
}

@test "fixture: the loopback registry serves the images the tests expect" {
  # (no hero here: when this fails, the tests below fail for the fixture's sake)
  manifest_get test/bb:latest | grep -q "\"$OCI_LAYER_GZIP\""
  [ "$(manifest_layers test/bb:latest | wc -l)" -eq 1 ]
  blob_get test/bb "$(manifest_config test/bb:latest)" | grep -q '"Cmd":\["/bin/sh"\]'
  layer_list test/bb:latest 1 | grep -q ' bin/busybox$'
  manifest_get test/v2s2:latest | grep -q "\"mediaType\":\"$DOCKER_MANIFEST\""
  manifest_get test/zstd:latest | grep -q '+zstd"'
  manifest_get test/multi:latest | grep -q "\"mediaType\":\"$OCI_INDEX\""
  [ "$(manifest_get test/multi:latest | json_digests | wc -l)" -eq 2 ]
  [ "$(image_diff_ids "test/multi:$HOST_ARCH")" != "$(image_diff_ids "test/multi:$OTHER_ARCH")" ]
  [ "$(manifest_layers test/wh:latest | wc -l)" -eq 5 ]
  layer_list test/wh:latest 3 | grep -q ' \.wh\.gone$'
  layer_list test/wh:latest 5 | grep -q ' opq/\.wh\.\.wh\.\.opq$'
  [ "$(manifest_layers test/sa:latest | head -n 1)" = "$(manifest_layers test/sb:latest | head -n 1)" ]
  [ "$(image_diff_ids test/sa:latest | wc -l)" -eq 2 ]
  layer_list library/alpine:3.20 2 | tail -n 1 | grep -q ' zzz-end/$'
  layer_list "test/multi:$HOST_ARCH" 2 | grep -q ' etc/marker$'
  local l
  l=$(manifest_layers test/trunc:latest | tail -n 1)
  [ $(( $(blob_get test/trunc "$l" | gzip -dc | wc -c) % 512 )) -ne 0 ]
  layer_list test/evil-dotdot:latest 1 | grep -q " \.\./\.\./.*${OUTSIDE#/}/dotdot\$"
  layer_list test/evil-absolute:latest 1 | grep -q " $OUTSIDE/abs\$"
  layer_list test/evil-symlink:latest 1 | grep -q " link -> $OUTSIDE\$"
  layer_list test/evil-symlink:latest 1 | grep -q ' link/file$'
  layer_list test/evil-hardlink:latest 1 | grep -q " hl link to \.\./\.\./.*${OUTSIDE#/}/secret\$"
  layer_list test/evil-hardlink-abs:latest 1 | grep -q " hl link to $OUTSIDE/secret\$"
  [ "$(cat "$OUTSIDE/secret")" = secret ]
}

@test "image_pull of an OCI image: verified blobs, one dir per layer, listed, summary line on stderr" {
  local m
  m=$(log_mark)
  pb p <<EOF
!!heropods.image_pull name:'bb' ref:'$REG/test/bb:latest'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  have_layers test/bb:latest
  blobs_verify
  has_image bb
  grep -q "$REG/test/bb:latest" <<< "$("$HERO" pods --base-dir "$BASE" images)"
  # one summary line for the image, nothing else about it
  local re
  re=$(pulled_re "$REG/test/bb:latest")
  [ "$(printf '%s\n' "${stderr_lines[@]}" | grep -c '^pulled')" -eq 1 ]
  printf '%s\n' "${stderr_lines[@]}" | grep -Eq "$re"
  # the image was fetched from the registry with its own client (plain http)
  log_since "$m" | grep -q '"GET /v2/test/bb/manifests/[^ ]* HTTP/1.1" 200 .*"hero/'

  # pulled already: nothing is transferred again
  m=$(log_mark)
  hero_run p
  [ "$status" -eq 0 ]
  [ "$(blob_gets_since "$m")" -eq 0 ]

  # -q: no progress at all
  pb q <<EOF
!!heropods.image_pull name:'bbq' ref:'$REG/test/bb:latest' reset:true
EOF
  hero_run q -q
  [ "$status" -eq 0 ]
  [ -z "$(printf '%s\n' "${stderr_lines[@]}" | grep '^pulled')" ]
  has_image bbq
}

@test "image_pull by digest" {
  local d
  d=$(manifest_digest test/bb:latest | cut -d' ' -f1)
  pb p <<EOF
!!heropods.image_pull name:'bydigest' ref:'$REG/test/bb@$d'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  have_layers test/bb:latest
  has_image bydigest
}

@test "a container runs on a pulled image; its root is an overlay of the image's layer dirs" {
  CTRS="onbb"
  pb p <<EOF
!!heropods.container_new name:'onbb' image:'$REG/test/bb:latest'
!!heropods.container_start name:'onbb' keep_alive:true
!!heropods.container_exec name:'onbb' cmd:'cat /etc/marker; hostname; echo abc | tr a-c A-C; ls /bin/busybox'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'bb\nonbb\nABC\n/bin/busybox' ]
  have_layers test/bb:latest
  local low d
  low=$(root_lowerdirs onbb)
  echo "# lowerdir=$low" >&2
  [ -n "$low" ] && [ "$low" != not-overlay ]
  for d in $(image_diff_ids test/bb:latest); do
    [[ "$low" == *"layers/$(hex "$d")"* ]]
  done
  # pulled on first use only: a second container of the same reference fetches nothing
  CTRS="onbb onbb2"
  local m
  m=$(log_mark)
  pb p2 <<EOF
!!heropods.container_new name:'onbb2' image:'$REG/test/bb:latest'
!!heropods.container_start name:'onbb2' keep_alive:true
!!heropods.container_exec name:'onbb2' cmd:'cat /etc/marker'
EOF
  hero_run p2
  [ "$status" -eq 0 ]
  [ "$output" = bb ]
  [ "$(blob_gets_since "$m")" -eq 0 ]
}

# stops_on_its_signal NAME IMAGE WORD: container_stop of a container of IMAGE, whose
# entrypoint ignores TERM and ends on the image's StopSignal only (printing WORD), takes
# far less than the 5 s grace period
stops_on_its_signal() {
  CTRS="$1"
  pb p <<EOF
!!heropods.container_new name:'$1' image:'$REG/test/$2:latest'
!!heropods.container_start name:'$1'
!!heropods.container_stop name:'$1' timeout:'5s'
EOF
  local s e
  s=$(date +%s%N)
  hero_run p
  e=$(date +%s%N)
  [ "$status" -eq 0 ]
  [ $(( (e - s) / 1000000 )) -lt 4000 ]
  grep -q "$3" "$BASE"/containers/*/log
}

@test "the image's StopSignal is what container_stop sends" {
  stops_on_its_signal ss stopsig stopped-by-usr1
}

@test "a StopSignal of SIGRTMIN+3 (systemd's) is sent, and hero-init forwards it" {
  stops_on_its_signal srt stoprt stopped-by-rtmin3
}

@test "image_pull of a Docker v2s2 manifest (skopeo --format v2s2)" {
  CTRS="v2"
  # the registry really serves Docker media types for it
  manifest_get test/v2s2:latest | grep -q "\"mediaType\":\"$DOCKER_MANIFEST\""
  manifest_get test/v2s2:latest | grep -q 'application/vnd.docker.image.rootfs.diff.tar.gzip'
  pb p <<EOF
!!heropods.image_pull name:'v2' ref:'$REG/test/v2s2:latest'
!!heropods.container_new name:'v2' image:'v2'
!!heropods.container_start name:'v2' keep_alive:true
!!heropods.container_exec name:'v2' cmd:'cat /etc/marker'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = bb ]
  have_layers test/v2s2:latest
  blobs_verify
}

@test "image_pull of a multi-platform index picks the host's platform, or platform:" {
  local host other
  host=$(image_diff_ids "test/multi:$HOST_ARCH")
  other=$(image_diff_ids "test/multi:$OTHER_ARCH")
  [ -n "$host" ] && [ -n "$other" ] && [ "$host" != "$other" ]
  manifest_get test/multi:latest | grep -q "\"mediaType\":\"$OCI_INDEX\""

  pb p <<EOF
!!heropods.image_pull name:'multi' ref:'$REG/test/multi:latest'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  have_layers "test/multi:$HOST_ARCH"
  # the other platform's own layer was not fetched (they share the busybox one)
  [ ! -e "$(layer_dir "$(tail -n 1 <<< "$other")")" ]

  # (the index gives arm64 the variant v8, as Docker Hub's do; linux/arm64 means it)
  pb p2 <<EOF
!!heropods.image_pull name:'multi-other' ref:'$REG/test/multi:latest' platform:'linux/$OTHER_ARCH'
EOF
  hero_run p2
  [ "$status" -eq 0 ]
  have_layers "test/multi:$OTHER_ARCH"
  has_image multi
  has_image multi-other

  # the host's one runs
  CTRS="mh"
  pb run <<'EOF'
!!heropods.container_new name:'mh' image:'multi'
!!heropods.container_start name:'mh' keep_alive:true
!!heropods.container_exec name:'mh' cmd:'cat /etc/marker'
EOF
  hero_run run
  [ "$status" -eq 0 ]
  [ "$output" = "arch-$HOST_ARCH" ]

  # a platform the index does not have: a clear error naming it
  pb none <<EOF
!!heropods.image_pull name:'multi-s390x' ref:'$REG/test/multi:latest' platform:'linux/s390x'
EOF
  hero_run none
  [ "$status" -eq 1 ]
  first_error_is none 2 's390x'
  no_image multi-s390x
}

@test "image_pull of a zstd layer" {
  CTRS="z"
  manifest_get test/zstd:latest | grep -q 'application/vnd.oci.image.layer.v1.tar+zstd'
  pb p <<EOF
!!heropods.image_pull name:'z' ref:'$REG/test/zstd:latest'
!!heropods.container_new name:'z' image:'z'
!!heropods.container_start name:'z' keep_alive:true
!!heropods.container_exec name:'z' cmd:'cat /etc/marker'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = bb ]
  have_layers test/zstd:latest
  blobs_verify
  # the same diff_id as the gzip image: the layer dir is one
  [ "$(image_diff_ids test/zstd:latest)" = "$(image_diff_ids test/bb:latest)" ]
}

@test "whiteout and opaque-directory layers: the files are really gone inside a container" {
  CTRS="wh"
  pb p <<EOF
!!heropods.image_pull name:'wh' ref:'$REG/test/wh:latest'
!!heropods.container_new name:'wh' image:'wh'
!!heropods.container_start name:'wh' keep_alive:true
!!heropods.container_exec name:'wh' cmd:'test ! -e /gone && echo ok'
!!heropods.container_exec name:'wh' cmd:'test ! -e /gonedir && test ! -e /gonedir/x && echo ok'
!!heropods.container_exec name:'wh' cmd:'ls -A /opq; head -c 3 /opq/c; echo'
!!heropods.container_exec name:'wh' cmd:'find / -xdev -name ".wh.*" | wc -l'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'ok\nok\nc\nccc\n0' ]
  have_layers test/wh:latest
  # no OCI whiteout file is ever written into a layer dir
  [ -z "$(find "$BASE/images/layers" -name '.wh.*')" ]
}

@test "a layer tar without its last padding and end blocks (as umoci insert writes it) pulls" {
  # the fixture really is cut short: podman (Go's archive/tar) accepts such layers
  local l
  l=$(manifest_layers test/trunc:latest | tail -n 1)
  [ $(( $(blob_get test/trunc "$l" | gzip -dc | wc -c) % 512 )) -ne 0 ]
  CTRS="tr"
  pb p <<EOF
!!heropods.container_new name:'tr' image:'$REG/test/trunc:latest'
!!heropods.container_start name:'tr' keep_alive:true
!!heropods.container_exec name:'tr' cmd:'cat /odd; echo; cat /etc/marker'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'odd\nbb' ]
}

@test "two images sharing a base layer: the second pull transfers only its own layer" {
  local base own_a own_b
  base=$(manifest_layers test/sa:latest | head -n 1)
  own_a=$(manifest_layers test/sa:latest | tail -n 1)
  own_b=$(manifest_layers test/sb:latest | tail -n 1)
  [ "$base" = "$(manifest_layers test/sb:latest | head -n 1)" ]
  [ "$own_a" != "$own_b" ]

  local m
  m=$(log_mark)
  pb a <<EOF
!!heropods.image_pull name:'sa' ref:'$REG/test/sa:latest'
EOF
  hero_run a
  [ "$status" -eq 0 ]
  [ "$(blob_gets_since "$m" "$base")" -ge 1 ]
  [ "$(blob_gets_since "$m" "$own_a")" -ge 1 ]
  local ino
  ino=$(stat -c '%i %Y' "$(layer_dir "$(image_diff_ids test/sa:latest | head -n 1)")")

  m=$(log_mark)
  pb b <<EOF
!!heropods.image_pull name:'sb' ref:'$REG/test/sb:latest'
EOF
  hero_run b
  [ "$status" -eq 0 ]
  [ "$(blob_gets_since "$m" "$base")" -eq 0 ]
  [ "$(blob_gets_since "$m" "$own_b")" -eq 1 ]
  # config + own layer, nothing else
  [ "$(blob_gets_since "$m")" -eq 2 ]
  printf '%s\n' "${stderr_lines[@]}" | grep -Eq "$(pulled_re "$REG/test/sb:latest")"
  printf '%s\n' "${stderr_lines[@]}" | grep -q '(1 already present)'
  # the shared layer dir is the same one, untouched
  [ "$(stat -c '%i %Y' "$(layer_dir "$(image_diff_ids test/sb:latest | head -n 1)")")" = "$ino" ]
  [ "$(ls "$BASE/images/layers" | wc -l)" -eq 3 ]
  have_layers test/sa:latest
  have_layers test/sb:latest
  # an image's size counts all its layers, the one it found in place too: the bytes of
  # their files (as du --apparent-size counts them)
  local img want got
  for img in sa sb; do
    want=$(for d in $(image_diff_ids "test/$img:latest"); do
      find "$(layer_dir "$d")" -type f -printf '%s\n'; done | awk '{s += $1} END {print s}')
    got=$(sqlite3 "$BASE/hero.db" "SELECT size FROM images WHERE name='$img';")
    [ "$got" = "$want" ] || { echo "size of $img: $got, its layers hold $want" >&2; false; }
    images_json | grep -q "\"size\": $want,"
  done
}

# regfix_start ARGS...: the registry double (tests/fixtures/regfix.c) serving the
# file's OCI layout, with ARGS; sets RF (its host:port) and RF_PID (teardown ends it)
regfix_start() {
  local bin=$BATS_TEST_DIRNAME/../../build/fixtures/regfix line
  [ -x "$bin" ] || { echo "$bin missing: make unit builds it" >&2; return 1; }
  "$bin" serve --dir "$FILE_TMP/oci" --log "$BASE/regfix.log" "$@" > "$BASE/regfix.out" 2> "$BASE/regfix.err" &
  RF_PID=$!
  for _ in $(seq 100); do
    read -r line < "$BASE/regfix.out" 2> /dev/null && [ -n "$line" ] && break
    sleep 0.05
  done
  [ -n "$line" ] || { echo "regfix did not start:" >&2; cat "$BASE/regfix.err" >&2; return 1; }
  RF=127.0.0.1:${line%% *}
}

# layout_digests TAG: the config's digest, then the layers', of the layout's image TAG
layout_digests() {
  skopeo inspect --raw "oci:$FILE_TMP/oci:$1" | json_digests
}

@test "layer downloads start once the manifest is in, while the config is on its way" {
  local cfg layers
  cfg=$(layout_digests sa | head -n 1)
  layers=$(layout_digests sa | tail -n +2)
  [ "$(wc -l <<< "$layers")" -eq 2 ]
  # the config is held 800 ms: the layers are asked for meanwhile, not after it
  regfix_start --hold "$cfg=800"
  pb a <<EOF
!!heropods.image_pull name:'sa' ref:'$RF/test/sa:sa'
EOF
  hero_run a
  [ "$status" -eq 0 ]
  run curl -sf "http://$RF/_stats"
  [[ "$output" =~ \"during_hold\":([0-9]+) ]]
  [ "${BASH_REMATCH[1]}" -eq 2 ] || { echo "stats: $output" >&2; cat "$BASE/regfix.log" >&2; false; }
  local d
  for d in $layers; do [ -f "$(blob_file "$d")" ]; done
  [ "$(ls "$BASE/images/layers" | wc -l)" -eq 2 ]
  has_image sa
}

@test "a config that fails after the layers downloaded leaves none of them behind" {
  local cfg layers
  cfg=$(layout_digests sb | head -n 1)
  layers=$(layout_digests sb | tail -n +2)
  # the config comes late (the layers are in by then) and with one byte changed
  regfix_start --hold "$cfg=800" --corrupt "$cfg"
  pb b <<EOF
!!heropods.image_pull name:'sb' ref:'$RF/test/sb:sb'
EOF
  hero_run b
  [ "$status" -eq 1 ]
  first_error_is b 2 "sha256|digest"
  run curl -sf "http://$RF/_stats"
  [[ "$output" =~ \"during_hold\":([0-9]+) ]]
  [ "${BASH_REMATCH[1]}" -eq 2 ] || { echo "stats: $output" >&2; cat "$BASE/regfix.log" >&2; false; }
  no_image sb
  local left
  left=$(find "$BASE/images" -type f ! -name .lock)
  [ -z "$left" ] || { echo "left in the store: $left" >&2; return 1; }
  [ -z "$(find "$BASE/images/layers" -mindepth 1 -maxdepth 1)" ]
}

# sa_pull_extracting: pulls sa in the background, its config held 3 s by regfix (PA:
# the pid, which teardown ends should a check fail), and waits until sa's own layer
# (the file /sa/data) is being extracted into a temp dir: fails if that is not so
# within 2.5 s. sa_pull_done waits for that pull, which must succeed.
sa_pull_extracting() {
  local cfg _
  cfg=$(layout_digests sa | head -n 1)
  regfix_start --hold "$cfg=3000"
  pb a <<EOF
!!heropods.image_pull name:'sa' ref:'$RF/test/sa:sa'
EOF
  "$HERO" run "$BASE/a.hs" > "$BASE/a.out" 2>&1 &
  PA=$!
  for _ in $(seq 50); do
    [ -z "$(find "$BASE/images/layers" -path '*/.tmp-*/sa/data' 2> /dev/null)" ] || return 0
    sleep 0.05
  done
  echo "no layer extracted 2.5 s into a 3 s hold of the config" >&2
  return 1
}
sa_pull_done() {
  local rc=0
  wait "$PA" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$BASE/a.out" >&2; return 1; }
  has_image sa
}

@test "a layer is extracted while its config is held, and goes into place once it comes" {
  sa_pull_extracting
  held
  # nothing is in place yet
  [ -z "$(find "$BASE/images/layers" -mindepth 1 -maxdepth 1 ! -name '.tmp-*')" ]
  sa_pull_done
  [ "$(ls "$BASE/images/layers" | wc -l)" -eq 2 ]
  [ -z "$(find "$BASE/images" -name '*.partial' -o -name '.tmp-*')" ]
}

@test "a pull extracts its layers without the shared libarchive, which only an export opens" {
  local maps
  sa_pull_extracting
  # what the process has mapped while it extracts a layer
  maps=$(cat "/proc/$PA/maps")
  held
  [ -n "$maps" ]
  if grep -E 'libarchive|libxml2|libicu' <<< "$maps"; then
    echo "the pull opened the shared libarchive (and its libraries)" >&2
    false
  fi
  sa_pull_done
  # an export writes with the shared libarchive, opened then
  pb e <<EOF
!!heropods.image_export name:'sa' dest_path:'$BASE/sa.tgz'
EOF
  hero_run e
  [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
  tar -tzf "$BASE/sa.tgz" | grep -qx './sa/data'
}

@test "a layer extracted before its config came, which names another diff_id, is not kept" {
  # wd: sa with its top layer's diff_id changed in the config (a config of its own,
  # a manifest of its own, tagged wd in the layout regfix serves)
  local cfg
  cfg=$(python3 - "$FILE_TMP/oci" sa wd <<'PY'
import hashlib, json, os, sys
L, src, dst = sys.argv[1:4]
ref = 'org.opencontainers.image.ref.name'
path = lambda d: '%s/blobs/sha256/%s' % (L, d.split(':')[1])
idx = json.load(open(L + '/index.json'))
m = [x for x in idx['manifests'] if x.get('annotations', {}).get(ref) == src][0]
man = json.load(open(path(m['digest'])))
cfg = json.load(open(path(man['config']['digest'])))
cfg['rootfs']['diff_ids'][-1] = 'sha256:' + hashlib.sha256(b'not this layer').hexdigest()
def put(b):
    d = 'sha256:' + hashlib.sha256(b).hexdigest()
    open(path(d), 'wb').write(b)
    return d, len(b)
man['config']['digest'], man['config']['size'] = put(json.dumps(cfg).encode())
md, ml = put(json.dumps(man).encode())
idx['manifests'] = [x for x in idx['manifests'] if x.get('annotations', {}).get(ref) != dst]
idx['manifests'].append({'mediaType': m['mediaType'], 'digest': md, 'size': ml,
                         'annotations': {ref: dst}})
with open(L + '/index.json.new', 'w') as f:
    json.dump(idx, f)
os.replace(L + '/index.json.new', L + '/index.json')
print(man['config']['digest'])
PY
)
  # the config comes 1.5 s late: the layers are downloaded and extracted by then
  regfix_start --hold "$cfg=1500"
  pb w <<EOF
!!heropods.image_pull name:'wd' ref:'$RF/test/wd:wd'
EOF
  hero_run w
  [ "$status" -eq 1 ]
  first_error_is w 2 "diff_id mismatch"
  no_image wd
  # the bottom layer (its diff_id is right) may stay; the top one must not
  [ "$(ls "$BASE/images/layers" | wc -l)" -le 1 ]
  [ -z "$(find "$BASE/images" -name '*.partial' -o -name '.tmp-*')" ]
  [ ! -e "$BASE/images/layers/$(python3 -c 'import hashlib; print(hashlib.sha256(b"not this layer").hexdigest())')" ]
}

@test "a layer streamed before its config showed it in the store is taken from the store" {
  # the bb layer in the store first, from the registry, gzip'd
  pb a <<EOF
!!heropods.image_pull name:'bb' ref:'$REG/test/bb:latest'
EOF
  hero_run a
  [ "$status" -eq 0 ]
  # the same layer compressed with zstd (another blob, the same diff_id), its config
  # held 100 ms: the blob's first 100 KB come at once (its stream starts), then the
  # connection drops; the config comes while the stream waits, and the rest of the
  # blob, fetched again with Range, has one byte wrong. The layer in the store
  # serves: the bad blob is not needed, and not kept
  skopeo copy -q "oci:$FILE_TMP/zstd:bb" "oci:$FILE_TMP/oci:bbz" > /dev/null
  local cfg zl
  cfg=$(layout_digests bbz | head -n 1)
  zl=$(layout_digests bbz | tail -n 1)
  [ "$(layout_digests bbz | wc -l)" -eq 2 ]
  regfix_start --hold "$cfg=100" --drop "$zl=100000" --corrupt "$zl"
  pb z <<EOF
!!heropods.image_pull name:'bbz' ref:'$RF/test/bbz:bbz'
EOF
  hero_run z
  [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
  has_image bbz
  [ "$(ls "$BASE/images/layers" | wc -l)" -eq 1 ]
  [ -z "$(find "$BASE/images" -name '*.partial' -o -name '.tmp-*')" ]
  [ ! -e "$(blob_file "$zl")" ]
  grep -q "GET /v2/test/bbz/blobs/$zl" "$BASE/regfix.log"
}

@test "a pull that fails once its layers are downloading cancels them, while another pull goes on" {
  local cfg_a cfg_b layer_b
  cfg_a=$(layout_digests sa | head -n 1)
  cfg_b=$(layout_digests sb | head -n 1)
  layer_b=$(layout_digests sb | tail -n 1)
  # sa goes on for 4 s (its config is held); sb's config comes at once, wrong, while
  # the answer for its own layer (the other one sa shares) is held 20 s
  regfix_start --hold "$cfg_a=4000" --corrupt "$cfg_b" --slow "$layer_b=20000"
  pb c <<EOF
!!heropods.image_pull name:'sa' ref:'$RF/test/sa:sa'
!!heropods.image_pull name:'sb' ref:'$RF/test/sb:sb'
EOF
  "$HERO" run "$BASE/c.hs" > "$BASE/c.out" 2>&1 &
  PA=$! # (teardown ends it, should a check below fail)
  local rc=0 gone=0 n=100
  log_waits "GET /v2/test/sb/blobs/$layer_b "
  # sb has failed: its download is cancelled at once (its partial goes), not left to
  # run beside sa until sa ends
  for _ in $(seq 40); do
    [ -e "$(blob_file "$layer_b").partial" ] || { gone=1; break; }
    sleep 0.05
  done
  held # (sa is still in flight)
  kill -0 "$PA"
  [ "$gone" -eq 1 ] || { echo "sb's partial is still there 2 s after sb failed" >&2; false; }
  # sa ends when its config comes (4 s after it was asked for): 10 s at most
  while kill -0 "$PA" 2> /dev/null && [ "$n" -gt 0 ]; do
    sleep 0.1
    n=$((n - 1))
  done
  [ "$n" -gt 0 ] || { echo "hero still runs 10 s later" >&2; false; }
  wait "$PA" || rc=$?
  [ "$rc" -eq 1 ] || { cat "$BASE/c.out" >&2; false; }
  has_image sa
  no_image sb
  [ -z "$(find "$BASE/images" -name '*.partial' -o -name '.tmp-*')" ]
  [ ! -e "$(blob_file "$layer_b")" ]
}

# log_waits REGEX [N]: waits (up to 10 s) until regfix's log has N (default 1) lines
# matching REGEX
log_waits() {
  for _ in $(seq 200); do
    [ "$(grep -Ec "$1" "$BASE/regfix.log" 2> /dev/null)" -ge "${2:-1}" ] && return 0
    sleep 0.05
  done
  echo "regfix never logged ${2:-1} of /$1/:" >&2
  cat "$BASE/regfix.log" >&2
  return 1
}

# held: the hold is on (regfix has not answered the held GET yet)
held() { ! grep -q '^HOLD-END' "$BASE/regfix.log"; }

# interrupted_within PID SECS: one SIGINT to PID, which must then exit within SECS
# seconds (else it is killed, and this fails rather than waiting for ever); sets RC to
# its exit status
interrupted_within() {
  kill -INT "$1"
  local n=$(($2 * 10))
  while kill -0 "$1" 2> /dev/null && [ "$n" -gt 0 ]; do
    sleep 0.1
    n=$((n - 1))
  done
  if kill -0 "$1" 2> /dev/null; then
    kill -KILL "$1"
    wait "$1" || true
    echo "pid $1 was still running $2 s after SIGINT" >&2
    return 1
  fi
  RC=0
  wait "$1" || RC=$?
}

# held_pull HOLD_MS [ACTIONS]: hero (`a`) runs ACTIONS (default: an image_pull of
# test/sa as sa; @RF@ in them stands for regfix's address) in the background, from a
# regfix that holds the first GET of sa's own layer HOLD_MS; returns once that GET has
# come in. Sets OWN (that layer's digest) and PA (the pid, to wait for); the output is
# in $BASE/a.out.
held_pull() {
  OWN=$(layout_digests sa | tail -n 1)
  regfix_start --hold "$OWN=$1"
  local actions=${2:-"!!heropods.image_pull name:'sa' ref:'@RF@/test/sa:sa'"}
  pb a <<< "${actions//@RF@/$RF}"
  "$HERO" run "$BASE/a.hs" > "$BASE/a.out" 2>&1 &
  PA=$!
  log_waits "GET /v2/test/sa/blobs/$OWN "
}

# overlapping_pulls HOLD_MS: two hero processes pull test/sa (as sa, then as sa2) from
# regfix: `a` as held_pull starts it; then `b` starts and asks for the config, which it
# does right after it has tried the layer's partial, a's and locked. Sets OWN, PA and PB
# (b's pid); b's output is in $BASE/b.out.
overlapping_pulls() {
  local cfg
  cfg=$(layout_digests sa | head -n 1)
  held_pull "$1"
  pb b <<EOF
!!heropods.image_pull name:'sa2' ref:'$RF/test/sa:sa'
EOF
  "$HERO" run "$BASE/b.hs" > "$BASE/b.out" 2>&1 &
  PB=$!
  log_waits "GET /v2/test/sa/blobs/$cfg " 2
}

@test "two hero processes pulling one image into one store: each blob is downloaded once, the other waits" {
  overlapping_pulls 3000
  # b tried the partial while a's download of it was held, so b found it locked
  held
  local ra=0 rb=0
  wait "$PA" || ra=$?
  wait "$PB" || rb=$?
  [ "$ra" -eq 0 ] || { cat "$BASE/a.out" >&2; false; }
  [ "$rb" -eq 0 ] || { cat "$BASE/b.out" >&2; false; }
  local d
  for d in $(layout_digests sa | tail -n +2); do
    [ "$(grep -c "GET /v2/test/sa/blobs/$d " "$BASE/regfix.log")" -eq 1 ]
  done
  has_image sa
  has_image sa2
  [ -z "$(find "$BASE/images" -name '*.partial' -o -name '.tmp-*')" ]
  blobs_verify
}

@test "a hero killed while downloading: another process waiting for the blob takes the download over" {
  overlapping_pulls 30000
  local rb=0
  # b has tried the partial and waits for a
  sleep 0.2
  kill -0 "$PB"
  [ "$(grep -c "GET /v2/test/sa/blobs/$OWN " "$BASE/regfix.log")" -eq 1 ]
  kill -KILL "$PA"
  wait "$PA" || true
  wait "$PB" || rb=$?
  [ "$rb" -eq 0 ] || { cat "$BASE/b.out" >&2; false; }
  [ "$(grep -c "GET /v2/test/sa/blobs/$OWN " "$BASE/regfix.log")" -eq 2 ] ||
    { cat "$BASE/regfix.log" "$BASE/b.out" >&2; false; }
  has_image sa2
  no_image sa
  [ -z "$(find "$BASE/images" -name '*.partial')" ]
  blobs_verify
}

@test "one interrupt stops a pull at once: nothing half-made is left, and the next pull completes" {
  # sa's own layer is held 30 s: the pull waits on the network
  held_pull 30000
  sleep 0.3
  held
  # before, the pull went on until the hold ended (the first Ctrl-C only said
  # "stopping")
  interrupted_within "$PA" 3 || { cat "$BASE/a.out" >&2; false; }
  [ "$RC" -eq 1 ] || { echo "exit $RC" >&2; cat "$BASE/a.out" >&2; false; }
  held
  grep -q "test/sa:sa: interrupted$" "$BASE/a.out" || { cat "$BASE/a.out" >&2; false; }
  no_image sa
  local left
  left=$(find "$BASE/images" -name '*.partial' -o -name '.tmp-*')
  [ -z "$left" ] || { echo "left: $left" >&2; false; }
  # (a layer that was complete before the interrupt may stay, as in a blob cache)
  hero_run a
  [ "$status" -eq 0 ]
  has_image sa
  have_layers test/sa:latest
  blobs_verify
}

@test "two actions sharing an interrupted pull both fail with 'interrupted'" {
  held_pull 30000 "!!heropods.container_new name:'c1' image:'@RF@/test/sa:sa'
!!heropods.container_new name:'c2' image:'@RF@/test/sa:sa'"
  sleep 0.3
  interrupted_within "$PA" 3 || { cat "$BASE/a.out" >&2; false; }
  [ "$RC" -eq 1 ] || { echo "exit $RC" >&2; cat "$BASE/a.out" >&2; false; }
  # one pull served both: each gets the message (before, the second got an empty one)
  [ "$(grep -c "container_new failed: pulling .*test/sa:sa: interrupted" "$BASE/a.out")" -eq 2 ] ||
    { cat "$BASE/a.out" >&2; false; }
  [ "$(grep -c "GET /v2/test/sa/manifests/" "$BASE/regfix.log")" -eq 1 ]
}

@test "one interrupt stops a wait for the image store's lock that another hero holds" {
  mkdir -p "$BASE/images"
  local fd
  # this shell holds the lock exclusive, as an image_delete of another hero would
  exec {fd}> "$BASE/images/.lock"
  flock -x "$fd"
  pb d <<EOF
!!heropods.image_delete name:'nothing'
EOF
  pb n <<EOF
!!heropods.container_new name:'c' image:'sa'
EOF
  local f
  for f in d n; do
    "$HERO" run "$BASE/$f.hs" > "$BASE/$f.out" 2>&1 {fd}>&- &
    PA=$!
    sleep 0.5
    kill -0 "$PA" || { cat "$BASE/$f.out" >&2; false; } # it waits
    interrupted_within "$PA" 2 || { exec {fd}>&-; cat "$BASE/$f.out" >&2; false; }
    [ "$RC" -eq 1 ] || { echo "$f: exit $RC" >&2; cat "$BASE/$f.out" >&2; false; }
    grep -q "interrupted while waiting for the image store" "$BASE/$f.out" ||
      { cat "$BASE/$f.out" >&2; false; }
  done
  exec {fd}>&-
}

@test "image_delete in one hero while another pulls an image sharing its layers: the shared layer stays" {
  local own_b bb sa_own
  own_b=$(layout_digests sb | tail -n 1)
  bb=$(skopeo inspect --config --raw "oci:$FILE_TMP/oci:sb" | json_digests | head -n 1)
  sa_own=$(skopeo inspect --config --raw "oci:$FILE_TMP/oci:sa" | json_digests | tail -n 1)
  [ "$bb" = "$(skopeo inspect --config --raw "oci:$FILE_TMP/oci:sa" | json_digests | head -n 1)" ]
  regfix_start --hold "$own_b=3000"
  pb a <<EOF
!!heropods.image_pull name:'sa' ref:'$RF/test/sa:sa'
EOF
  hero_run a
  [ "$status" -eq 0 ]
  [ -d "$(layer_dir "$bb")" ]
  pb b <<EOF
!!heropods.image_pull name:'sb' ref:'$RF/test/sb:sb'
EOF
  pb del <<EOF
!!heropods.image_delete name:'sa'
EOF
  # sb's pull finds the shared layer in place (once its config is in), then waits for
  # its own (held)
  "$HERO" run "$BASE/b.hs" > "$BASE/b.out" 2>&1 &
  local pbb=$! rb=0
  log_waits "GET /v2/test/sb/blobs/$own_b "
  sleep 0.3
  held
  kill -0 "$pbb"
  # sa goes while sb is not recorded yet: the delete waits for the pull (it ends only
  # after the hold), so its garbage collection sees sb's record
  hero_run del
  [ "$status" -eq 0 ]
  fails held
  wait "$pbb" || rb=$?
  [ "$rb" -eq 0 ] || { cat "$BASE/b.out" >&2; false; }
  no_image sa
  has_image sb
  [ -d "$(layer_dir "$bb")" ]
  [ ! -e "$(layer_dir "$sa_own")" ]
  # a container runs on sb: its layers are all there
  pb run <<EOF
!!heropods.container_new name:'c' image:'sb'
!!heropods.container_start name:'c' keep_alive:true
!!heropods.container_exec name:'c' cmd:'test -x /bin/busybox && test -f /sb/data'
EOF
  CTRS="c"
  hero_run run
  [ "$status" -eq 0 ]
}

@test "reset:true pulls again; image_pull follows a moved tag, a container of the stored name does not" {
  local L=$FILE_TMP/oci m
  image_push "$L:bb" "$REG/test/moving:latest"
  pb p <<EOF
!!heropods.image_pull name:'mv' ref:'$REG/test/moving:latest'
EOF
  hero_run p
  [ "$status" -eq 0 ]

  # reset:true: the manifest is fetched again and the image pulled again
  m=$(log_mark)
  pb r <<EOF
!!heropods.image_pull name:'mv' ref:'$REG/test/moving:latest' reset:true
EOF
  hero_run r
  [ "$status" -eq 0 ]
  log_since "$m" | grep -q '"GET /v2/test/moving/manifests/[^ ]* HTTP/1.1" 200 '
  printf '%s\n' "${stderr_lines[@]}" | grep -Eq "$(pulled_re "$REG/test/moving:latest")"
  has_image mv
  have_layers test/moving:latest

  # the tag moves to another image
  image_push "$L:sa" "$REG/test/moving:latest"
  local new
  new=$(image_diff_ids test/moving:latest | tail -n 1)
  [ ! -e "$(layer_dir "$new")" ]
  # a container of the stored name uses what is stored: nothing is fetched
  CTRS="old"
  m=$(log_mark)
  pb old <<'EOF'
!!heropods.container_new name:'old' image:'mv'
!!heropods.container_start name:'old' keep_alive:true
!!heropods.container_exec name:'old' cmd:'test -e /sa || echo as-stored'
!!heropods.container_delete name:'old'
EOF
  hero_run old
  [ "$status" -eq 0 ]
  [ "$output" = as-stored ]
  [ "$(blob_gets_since "$m")" -eq 0 ]
  [ ! -e "$(layer_dir "$new")" ]

  # image_pull asks the registry whether the reference moved, and follows it
  hero_run p
  [ "$status" -eq 0 ]
  [ -d "$(layer_dir "$new")" ]
  have_layers test/moving:latest
  CTRS="new"
  pb run <<'EOF'
!!heropods.container_new name:'new' image:'mv'
!!heropods.container_start name:'new' keep_alive:true
!!heropods.container_exec name:'new' cmd:'test -f /sa/data && echo moved'
EOF
  hero_run run
  [ "$status" -eq 0 ]
  [ "$output" = moved ]
}

@test "a container keeps the image it was made from: a pull of its name moves neither its root nor its layers" {
  local L=$FILE_TMP/oci own
  image_push "$L:sa" "$REG/test/pinned:latest"
  CTRS="keep gone"
  pb mk <<EOF
!!heropods.image_pull name:'pin' ref:'$REG/test/pinned:latest'
!!heropods.container_new name:'keep' image:'pin'
!!heropods.container_new name:'gone' image:'pin'
EOF
  hero_run mk
  [ "$status" -eq 0 ]
  own=$(image_diff_ids test/sa:latest | tail -n 1) # the /sa layer, sa's own
  # a container made before the store kept its image (no record of it) gets it recorded
  # when its definition comes again
  sqlite3 "$BASE/hero.db" "UPDATE containers SET image_rootfs = NULL, image_config = NULL WHERE name = 'keep'"
  hero_run mk
  [ "$status" -eq 0 ]
  [ -n "$(sqlite3 "$BASE/hero.db" "SELECT image_rootfs FROM containers WHERE name = 'keep'")" ]
  # the tag moves to bb, and the name follows it: no image has the /sa layer now
  image_push "$L:bb" "$REG/test/pinned:latest"
  pb p <<EOF
!!heropods.image_pull name:'pin' ref:'$REG/test/pinned:latest'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  # garbage collection (an image_delete of another image) keeps the containers' layers
  pb gc <<EOF
!!heropods.image_pull name:'other' ref:'$REG/test/sb:latest'
!!heropods.image_delete name:'other'
EOF
  hero_run gc
  [ "$status" -eq 0 ]
  [ -d "$(layer_dir "$own")" ]
  # its definition again is nothing to do (it says that the name moved on), and it
  # starts on the image it was made from
  pb run <<'EOF'
!!heropods.container_new name:'keep' image:'pin'
!!heropods.container_start name:'keep' keep_alive:true
!!heropods.container_exec name:'keep' cmd:'test -f /sa/data && echo as-made'
!!heropods.container_stop name:'keep'
EOF
  hero_run run
  [ "$status" -eq 0 ]
  [ "$output" = as-made ]
  [[ "$stderr" == *"container 'keep' stays on the image it was made from; image 'pin' stands for another one now"* ]]
  # reset:true makes it again, on the image the name stands for now
  pb reset <<'EOF'
!!heropods.container_new name:'keep' image:'pin' reset:true
!!heropods.container_start name:'keep' keep_alive:true
!!heropods.container_exec name:'keep' cmd:'test -e /sa || echo moved'
!!heropods.container_delete name:'keep'
EOF
  hero_run reset
  [ "$status" -eq 0 ]
  [ "$output" = moved ]
  # a container whose image's layer went (by hand) does not start on another image
  rm -rf "$(layer_dir "$own")"
  pb g <<'EOF'
!!heropods.container_start name:'gone' keep_alive:true
EOF
  hero_run g
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"the image container 'gone' was made from is gone ("*"): container_new reset:true makes it again on image 'pin'"* ]]
  pb d <<'EOF'
!!heropods.container_delete name:'gone'
EOF
  hero_run d
  [ "$status" -eq 0 ]
  CTRS=""
}

# ---------------------------------------------------------------- image forms

@test "custom image and the named images come through a registries: mirror of docker.io" {
  cat > "$BASE/hero.yaml" <<EOF
registries:
  - prefix: docker.io
    location: $REG
    insecure: true
EOF
  export HERO_CONFIG=$BASE/hero.yaml
  CTRS="cu al ub ub25"
  local m
  m=$(log_mark)
  pb p <<'EOF'
!!heropods.container_new name:'cu' image:'custom' custom_image_name:'myalpine' docker_url:'docker.io/library/alpine:3.20'
!!heropods.container_new name:'al' image:'alpine_3_20'
!!heropods.container_new name:'ub' image:'ubuntu_24_04'
!!heropods.container_new name:'ub25' image:'ubuntu_25_04'
!!heropods.container_start name:'cu' keep_alive:true
!!heropods.container_start name:'al' keep_alive:true
!!heropods.container_start name:'ub' keep_alive:true
!!heropods.container_exec name:'cu' cmd:'cat /etc/marker'
!!heropods.container_exec name:'al' cmd:'cat /etc/marker'
!!heropods.container_exec name:'ub' cmd:'cat /etc/marker'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'from-the-mirror\nfrom-the-mirror\nfrom-the-mirror' ]
  has_image myalpine
  "$HERO" pods --base-dir "$BASE" images | grep -E '^myalpine ' | grep -q 'docker.io/library/alpine:3.20'
  # each reference was asked of the mirror
  log_since "$m" | grep -Eq '"(GET|HEAD) /v2/library/alpine/manifests/3.20 '
  log_since "$m" | grep -Eq '"(GET|HEAD) /v2/library/ubuntu/manifests/24.04 '
  log_since "$m" | grep -Eq '"(GET|HEAD) /v2/library/ubuntu/manifests/25.04 '
  fails grep -q 'docker.io' "$REG_LOG"
}

@test "a mirror that leaves no repository fails the pull with that error" {
  cat > "$BASE/hero.yaml" <<EOF
registries:
  - prefix: example.org/foo
    location: 127.0.0.1:9
    insecure: true
EOF
  export HERO_CONFIG=$BASE/hero.yaml
  # (the error comes before any request: the pull ended inside the resolve call,
  # which an earlier build then read freed memory after, and crashed)
  pb m <<'EOF'
!!heropods.image_pull name:'m' ref:'example.org/foo:1'
EOF
  hero_run m
  [ "$status" -eq 1 ] || { echo "status $status: $stderr" >&2; false; }
  first_error_is m 2 "no repository left"
  no_image m
}

# ---------------------------------------------------------------- podman

# podman_private: podman gets storage, run and temp dirs of the test's own (through
# CONTAINERS_CONF and CONTAINERS_STORAGE_CONF): the machine's podman state stays
# untouched; teardown empties it
podman_private() {
  PODMAN_DIR=$BASE/podman
  mkdir -p "$PODMAN_DIR"
  printf '[containers]\ndefault_ulimits = []\n[engine]\ntmp_dir = "%s"\nevents_logger = "file"\nevents_logfile_path = "%s"\n' \
    "$PODMAN_DIR/tmp" "$PODMAN_DIR/events.log" > "$PODMAN_DIR/containers.conf"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' \
    "$PODMAN_DIR/root" "$PODMAN_DIR/run" > "$PODMAN_DIR/storage.conf"
  export CONTAINERS_CONF=$PODMAN_DIR/containers.conf
  export CONTAINERS_STORAGE_CONF=$PODMAN_DIR/storage.conf
}

@test "use_podman:true pulls through podman (its own storage), and containers run on it" {
  command -v podman > /dev/null || skip "needs podman (Debian package podman)"
  podman_private
  set_hdr use_podman:true
  CTRS="pbb pwh"
  # exports a hero killed mid-pull left: a dead process's goes, a live one's stays
  mkdir -p "$BASE/images"
  : > "$BASE/images/.tmp-podman-999999999-dead.tar"
  : > "$BASE/images/.tmp-podman-$$-live.tar"
  local m
  m=$(log_mark)
  pb p <<EOF
!!heropods.image_pull name:'pbb' ref:'$REG/test/bb:latest'
!!heropods.image_pull name:'pwh' ref:'$REG/test/wh:latest'
!!heropods.container_new name:'pbb' image:'pbb'
!!heropods.container_new name:'pwh' image:'pwh'
!!heropods.container_start name:'pbb' keep_alive:true
!!heropods.container_start name:'pwh' keep_alive:true
!!heropods.container_exec name:'pbb' cmd:'cat /etc/marker'
!!heropods.container_exec name:'pwh' cmd:'test ! -e /gone && test ! -e /gonedir && ls -A /opq'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'bb\nc' ]
  has_image pbb
  has_image pwh
  # podman fetched them (containers/image's user agent), hero's own client did not
  log_since "$m" | grep -q '"GET /v2/test/bb/manifests/[^ ]* HTTP/1.1" 200 .*"containers/'
  fails grep -q '"hero/' <(log_since "$m")
  # in the storage given through CONTAINERS_STORAGE_CONF
  [ -d "$PODMAN_DIR/root/overlay" ]
  [ ! -e "$BASE/images/.tmp-podman-999999999-dead.tar" ]
  [ -e "$BASE/images/.tmp-podman-$$-live.tar" ]
}

@test "one interrupt stops a pull through podman: podman is stopped, nothing is recorded or left" {
  command -v podman > /dev/null || skip "needs podman (Debian package podman)"
  podman_private
  set_hdr use_podman:true
  held_pull 30000 "!!heropods.image_pull name:'psa' ref:'@RF@/test/sa:sa'"
  sleep 0.3
  # before, hero waited for podman (in a session of its own, the terminal's Ctrl-C
  # does not reach it) to the end of the hold
  interrupted_within "$PA" 5 || { cat "$BASE/a.out" >&2; false; }
  [ "$RC" -eq 1 ] || { echo "exit $RC" >&2; cat "$BASE/a.out" >&2; false; }
  held
  grep -q "podman pull: interrupted" "$BASE/a.out" || { cat "$BASE/a.out" >&2; false; }
  no_image psa
  [ -z "$(find "$BASE/images" -name '.tmp-*')" ]
  [ -z "$(pgrep -f "podman pull .*$RF/test/sa:sa")" ]
  [ -z "$(podman ps -a -q)" ]
}

# ---------------------------------------------------------------- import / export

@test "image_import of a .tgz and a .tar; image_export; the export imports again and runs" {
  local root=$BASE/root
  mkdir -p "$root"
  cp -a "$REG_CACHE/." "$root/"
  echo imported > "$root/etc/marker"
  tar -czf "$BASE/root.tgz" -C "$root" .
  tar -cf "$BASE/root.tar" -C "$root" .
  CTRS="i1 i2 i3"
  pb p <<EOF
!!heropods.image_import source_path:'$BASE/root.tgz' name:'imp'
!!heropods.image_import source_path:'$BASE/root.tar' name:'impt'
!!heropods.container_new name:'i1' image:'imp'
!!heropods.container_new name:'i2' image:'impt'
!!heropods.container_start name:'i1' keep_alive:true
!!heropods.container_start name:'i2' keep_alive:true
!!heropods.container_exec name:'i1' cmd:'cat /etc/marker'
!!heropods.container_exec name:'i2' cmd:'cat /etc/marker'
!!heropods.image_export name:'imp' dest_path:'$BASE/out1.tgz' compress_level:1
!!heropods.image_export name:'imp' dest_path:'$BASE/out9.tgz' compress_level:9
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ "$output" = $'imported\nimported' ]
  has_image imp
  has_image impt
  gzip -t "$BASE/out1.tgz"
  gzip -t "$BASE/out9.tgz"
  [ "$(stat -c %s "$BASE/out9.tgz")" -lt "$(stat -c %s "$BASE/out1.tgz")" ]
  tar -tzf "$BASE/out9.tgz" | sed 's,^\./,,' | grep -qx 'bin/busybox'
  tar -tzf "$BASE/out9.tgz" | sed 's,^\./,,' | grep -qx 'etc/marker'
  [ "$(tar -xzOf "$BASE/out9.tgz" ./etc/marker 2> /dev/null || tar -xzOf "$BASE/out9.tgz" etc/marker)" = imported ]

  pb again <<EOF
!!heropods.image_import source_path:'$BASE/out9.tgz' name:'imp2'
!!heropods.container_new name:'i3' image:'imp2'
!!heropods.container_start name:'i3' keep_alive:true
!!heropods.container_exec name:'i3' cmd:'cat /etc/marker; ls /bin/sh'
EOF
  hero_run again
  [ "$status" -eq 0 ]
  [ "$output" = $'imported\n/bin/sh' ]
  has_image imp2
}

@test "image_export of a pulled image with whiteouts: the merged root, no whiteouts" {
  # mount points of exports: one of a dead process (removed), one of a live one (kept)
  mkdir -p "$BASE/images/.export-999999999-dead" "$BASE/images/.export-$$-live"
  pb p <<EOF
!!heropods.image_pull name:'wh' ref:'$REG/test/wh:latest'
!!heropods.image_export name:'wh' dest_path:'$BASE/wh.tgz'
EOF
  hero_run p
  [ "$status" -eq 0 ]
  [ ! -e "$BASE/images/.export-999999999-dead" ]
  [ -d "$BASE/images/.export-$$-live" ]
  [ -z "$(find "$BASE/images" -maxdepth 1 -name ".export-*" ! -name ".export-$$-live")" ]
  # the file as the umask makes files, not 0600
  [ "$(stat -c %a "$BASE/wh.tgz")" = "$(printf '%o' $(( 0666 & ~$(umask) )))" ]
  local list names
  list=$(tar -tvzf "$BASE/wh.tgz")
  # owners by number only: the host's names are not the image's
  grep -q ' 0/0 ' <<< "$list"
  fails grep -q 'root/root' <<< "$list"
  names=$(tar -tzf "$BASE/wh.tgz" | sed 's,^\./,,; s,/$,,')
  grep -qx 'bin/busybox' <<< "$names"
  grep -qx 'opq/c' <<< "$names"
  fails grep -q '\.wh\.' <<< "$names"
  fails grep -qx 'gone' <<< "$names"
  fails grep -q '^gonedir' <<< "$names"
  fails grep -qx 'opq/[ab]' <<< "$names"
  fails grep -q '^c' <<< "$list"          # no overlay whiteout devices either
}

@test "image_export refuses compress_level outside 1..9" {
  pb p <<EOF
!!heropods.image_pull name:'bb' ref:'$REG/test/bb:latest'
!!heropods.image_export name:'bb' dest_path:'$BASE/x.tgz' compress_level:10
EOF
  hero_run p
  [ "$status" -ne 0 ]
  [[ "$stderr" == *compress_level* ]]
  [ ! -e "$BASE/x.tgz" ]
}

# ---------------------------------------------------------------- delete

@test "image_delete is refused while a container uses the image; afterwards only its own blobs and layers go" {
  CTRS="user"
  pb p <<EOF
!!heropods.image_pull name:'sa' ref:'$REG/test/sa:latest'
!!heropods.image_pull name:'sb' ref:'$REG/test/sb:latest'
!!heropods.container_new name:'user' image:'sa'
!!heropods.container_start name:'user' keep_alive:true
EOF
  hero_run p
  [ "$status" -eq 0 ]
  local base own_a own_b la lb
  base=$(image_diff_ids test/sa:latest | head -n 1)
  own_a=$(image_diff_ids test/sa:latest | tail -n 1)
  own_b=$(image_diff_ids test/sb:latest | tail -n 1)
  la=$(manifest_layers test/sa:latest | tail -n 1)
  lb=$(manifest_layers test/sb:latest | tail -n 1)

  pb del <<'EOF'
!!heropods.image_delete name:'sa'
EOF
  hero_run del
  [ "$status" -eq 1 ]
  first_error_is del 2 "image_delete.*user"
  has_image sa
  have_layers test/sa:latest

  pb rm <<'EOF'
!!heropods.container_delete name:'user'
!!heropods.image_delete name:'sa'
EOF
  hero_run rm
  [ "$status" -eq 0 ]
  no_image sa
  has_image sb
  [ ! -e "$(layer_dir "$own_a")" ]
  [ ! -e "$(blob_file "$la")" ]
  [ ! -e "$(blob_file "$(manifest_config test/sa:latest)")" ]
  [ -d "$(layer_dir "$base")" ]          # sb still uses it
  have_layers test/sb:latest
  blobs_verify

  # sb still runs
  CTRS="other"
  pb run <<'EOF'
!!heropods.container_new name:'other' image:'sb'
!!heropods.container_start name:'other' keep_alive:true
!!heropods.container_exec name:'other' cmd:'test -f /sb/data && cat /etc/marker'
!!heropods.container_delete name:'other'
!!heropods.image_delete name:'sb'
EOF
  hero_run run
  [ "$status" -eq 0 ]
  [ "$output" = bb ]
  no_image sb
  [ ! -e "$(layer_dir "$base")" ]
  [ ! -e "$(layer_dir "$own_b")" ]
  [ ! -e "$(blob_file "$lb")" ]
  [ -z "$(find "$BASE/images/layers" "$BASE/images/blobs" -mindepth 1 -not -type d 2> /dev/null)" ]
}

# ---------------------------------------------------------------- wrong content

@test "a blob served with wrong bytes fails the pull and caches nothing; fixed, the pull succeeds" {
  local d=$BASE/raw
  mkdir -p "$d/c"
  head -c 8192 /dev/urandom > "$d/c/payload"
  tar -cf "$d/layer.tar" -C "$d/c" payload
  push_raw_image test/corrupt latest "$d/layer.tar"
  local layer=${RAW_LAYERS[0]} diff=${RAW_DIFF_IDS[0]} data
  data=$(reg_blob_data "$layer")
  [ -f "$data" ]
  cp "$data" "$d/good"
  # the same size, other bytes
  head -c "$(stat -c %s "$data")" /dev/urandom > "$data"
  fails cmp -s <(blob_get test/corrupt "$layer") "$d/good"

  pb p <<EOF
!!heropods.image_pull name:'bad' ref:'$REG/test/corrupt:latest'
EOF
  hero_run p
  [ "$status" -eq 1 ]
  first_error_is p 2 "$(hex "$layer" | cut -c1-12)|sha256|digest"
  no_image bad
  [ -z "$(find "$BASE/images" -name "*$(hex "$layer")*")" ]
  [ ! -e "$(layer_dir "$diff")" ]
  [ -z "$(find "$BASE/images" -name payload)" ]
  blobs_verify

  # the registry is fixed: the same pull now succeeds (nothing bad was kept)
  cp "$d/good" "$data"
  hero_run p
  [ "$status" -eq 0 ]
  [ -f "$(layer_dir "$diff")/payload" ]
  cmp "$(layer_dir "$diff")/payload" "$d/c/payload"
  blobs_verify
}

@test "a config blob or a manifest with wrong bytes, or a wrong diff_id, fails the pull" {
  local d=$BASE/raw
  mkdir -p "$d/c"
  echo hi > "$d/c/f"
  tar -cf "$d/layer.tar" -C "$d/c" f
  push_raw_image test/badcfg latest "$d/layer.tar"
  local data
  data=$(reg_blob_data "$RAW_CONFIG")
  # still valid JSON of the same size: /bin/sh becomes /bin/sx
  sed -i 's,/bin/sh,/bin/sx,' "$data"
  pb p <<EOF
!!heropods.image_pull name:'badcfg' ref:'$REG/test/badcfg:latest'
EOF
  hero_run p
  [ "$status" -eq 1 ]
  first_error_is p 2 "sha256|digest"
  no_image badcfg
  [ -z "$(find "$BASE/images" -name "*$(hex "$RAW_CONFIG")*")" ]

  push_raw_image test/badman latest "$d/layer.tar"
  local man=$RAW_MANIFEST
  data=$(reg_blob_data "$man")
  grep -q '"hero.test":"a"' "$data"
  sed -i 's/"hero.test":"a"/"hero.test":"b"/' "$data"
  # the registry serves the changed bytes under the old digest
  [ "$(curl -sf -H "Accept: $OCI_MANIFEST" "http://$REG/v2/test/badman/manifests/$man" | sha256sum | cut -d' ' -f1)" != "$(hex "$man")" ]
  pb m <<EOF
!!heropods.image_pull name:'badman' ref:'$REG/test/badman@$man'
EOF
  hero_run m
  [ "$status" -eq 1 ]
  first_error_is m 2 "sha256|digest"
  no_image badman
  [ ! -e "$(layer_dir "${RAW_DIFF_IDS[0]}")" ]
  # a config whose diff_id is not the layer's uncompressed sha256
  RAW_WRONG_DIFF_IDS=1 push_raw_image test/baddiff latest "$d/layer.tar"
  pb dd <<EOF
!!heropods.image_pull name:'baddiff' ref:'$REG/test/baddiff:latest'
EOF
  hero_run dd
  [ "$status" -eq 1 ]
  first_error_is dd 2 "diff_id"
  no_image baddiff
  [ -z "$(find "$BASE/images/layers" -mindepth 1 -maxdepth 1)" ]

  # diff_ids not of the form sha256:<64 hex> (one would name the layers dir itself, or
  # a directory outside it): refused before anything is extracted
  local bad odd=0
  for bad in '"sha256:"' '"sha256:../.."' 'null'; do
    odd=$((odd + 1))
    RAW_DIFF_ID_JSON=$bad push_raw_image "test/oddiff$odd" latest "$d/layer.tar"
    pb "o$odd" <<EOF
!!heropods.image_pull name:'oddiff$odd' ref:'$REG/test/oddiff$odd:latest'
EOF
    hero_run "o$odd"
    [ "$status" -eq 1 ]
    first_error_is "o$odd" 2 "unusable diff_id"
    no_image "oddiff$odd"
    [ -z "$(find "$BASE/images/layers" -mindepth 1 -maxdepth 1)" ]
  done
  nothing_outside

  # by tag too: the registry names the digest it stored (Docker-Content-Digest)
  curl -sf -D - -o /dev/null -H "Accept: $OCI_MANIFEST" "http://$REG/v2/test/badman/manifests/latest" |
    tr -d '\r' | grep -qi "^docker-content-digest: $man\$"
  pb t <<EOF
!!heropods.image_pull name:'badman' ref:'$REG/test/badman:latest'
EOF
  hero_run t
  [ "$status" -eq 1 ]
  first_error_is t 2 "sha256|digest"
  no_image badman
}

@test "a config's diff_id in upper case names the layer dir the lower-case one does" {
  local d=$BASE/raw
  mkdir -p "$d/c"
  echo hi > "$d/c/f"
  tar -cf "$d/layer.tar" -C "$d/c" f
  # its dir is the lower-case one, not a second copy beside it (before, hero made
  # layers/ABC... next to layers/abc...)
  RAW_DIFF_ID_JSON= push_raw_image test/lowdiff latest "$d/layer.tar"
  local id=${RAW_DIFF_IDS[0]#sha256:}
  RAW_DIFF_ID_JSON="\"sha256:$(tr a-f A-F <<< "$id")\"" push_raw_image test/updiff latest "$d/layer.tar"
  pb lu <<EOF
!!heropods.image_pull name:'lowdiff' ref:'$REG/test/lowdiff:latest'
!!heropods.image_pull name:'updiff' ref:'$REG/test/updiff:latest'
EOF
  hero_run lu
  [ "$status" -eq 0 ] || { echo "$stderr" >&2; false; }
  has_image lowdiff
  has_image updiff
  [ "$(ls "$BASE/images/layers")" = "$id" ] || { ls -l "$BASE/images/layers" >&2; false; }
}

# hostile_pull KIND REGEX: the pull of test/evil-KIND fails with an error matching
# REGEX, writes nothing outside, and keeps nothing of the layer
hostile_pull() {
  pb p <<EOF
!!heropods.image_pull name:'evil' ref:'$REG/test/evil-$1:latest'
EOF
  hero_run p
  [ "$status" -eq 1 ] || { echo "the pull of a hostile layer did not fail" >&2; return 1; }
  first_error_is p 2 "$2"
  nothing_outside
  no_image evil
  local x
  x=$(find "$BASE" \( -name ok -o -name ok2 -o -name dotdot -o -name abs -o -name link -o -name hl \) -print)
  [ -z "$x" ] || { echo "left in the store: $x" >&2; return 1; }
  x=$(find "$BASE/images/layers" -mindepth 1 -maxdepth 1 2> /dev/null)
  [ -z "$x" ] || { echo "layer dirs left: $x" >&2; return 1; }
}

@test "hostile layer: a '..' entry fails the pull, nothing is written outside" {
  hostile_pull dotdot 'dotdot|\.\.'
}

@test "hostile layer: an absolute entry name fails the pull, nothing is written outside" {
  hostile_pull absolute 'abs'
}

@test "hostile layer: writing through a symlink that leaves the root fails the pull" {
  hostile_pull symlink 'link'
}

@test "hostile layer: a hardlink to a file outside the root fails the pull" {
  hostile_pull hardlink 'hl|secret'
}

@test "hostile layer: a hardlink to an absolute path fails the pull" {
  hostile_pull hardlink-abs 'hl|secret'
}
