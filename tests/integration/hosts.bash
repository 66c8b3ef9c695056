# Two "hosts" for overlay tests: network namespaces of the test's own, each held by a
# `sleep` the test starts (HOLD_<NAME> is its pid; kill it to end the namespace).
# Loaded by overlay.bats and mycelium_double.bats with `load hosts`.

# host NAME: starts a namespace of its own held by a sleep; sets HOLD_<NAME>
host() {
  unshare --net -- sleep 100000 3>&- &
  local pid=$! i
  eval "HOLD_$1=$pid"
  for i in $(seq 100); do
    [ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] && break
    sleep 0.05
  done
  [ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ]
  in_host "$1" ip link set lo up
}

# in_host NAME CMD...: CMD in that host's network namespace (nsenter, never
# `ip netns exec`, which remounts /sys and hides the cgroup mounts from crun)
in_host() {
  local h=$1 pid
  shift
  eval "pid=\$HOLD_$h"
  nsenter --net="/proc/$pid/ns/net" -- "$@"
}
