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

# two_hosts: hosts A and B joined by a veth ($VA in A, $VB in B, names the test
# picks), A = ${ULA}1 and 192.0.2.1, B = ${ULA}2 and 192.0.2.2 (ULA and TEST-NET-1
# addresses, only ever inside these two namespaces)
two_hosts() {
  host A
  host B
  ip link add "$VA" type veth peer name "$VB"
  ip link set "$VA" netns "$HOLD_A"
  ip link set "$VB" netns "$HOLD_B"
  in_host A ip addr add "${ULA}1/64" dev "$VA" nodad
  in_host B ip addr add "${ULA}2/64" dev "$VB" nodad
  in_host A ip addr add 192.0.2.1/24 dev "$VA"
  in_host B ip addr add 192.0.2.2/24 dev "$VB"
  in_host A ip link set "$VA" up
  in_host B ip link set "$VB" up
}
