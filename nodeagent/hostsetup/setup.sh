#!/bin/sh
# setup.sh: prepare a Debian 12 / Ubuntu host to run berth's node agent.
# Run as root. Idempotent: it installs only what is missing, changes nothing
# else, and prints every step it took. It never edits /etc/containers: berth
# runs its Podman service with CONTAINERS_CONF pointing at the project's own
# containers.conf (nodeagent/hostsetup/containers.conf, embedded in the berth
# binary), so the host's own Podman keeps behaving as before.
#
# README: why each package and setting exists (measured on Debian 12 VMs
# with hybrid cgroups v1+v2, no systemd and no registry):
#
#   podman      4.3.1 is the newest in Debian 12's suites; berth speaks to its
#               REST API (`podman system service`) through the v5 bindings.
#   runc        the default OCI runtime crun fails on hybrid cgroup hosts
#               ("cgroups in hybrid mode not supported"); containers.conf sets
#               runtime = "runc".
#   catatonit   the infra (pause) process of every pod. Podman 4.3 builds its
#               localhost/podman-pause image from it on first use, offline, so
#               no pause image has to be pulled.
#   iptables    netavark's port forwarding and masquerading, and berth's
#               Service rules (go-iptables).
#   iproute2    `bridge` turns on hairpin mode for pod ports (a pod reaching
#               itself through its own Service).
#   netavark    Podman's network stack: the bridge pods live on, reachable
#               from the host, which berth's Services DNAT to.
#   git         berth follows Git repositories (and go-git runs
#               git-upload-pack for file:// repositories).
#
# containers.conf settings:
#   default_ulimits nofile=1024:1024, nproc=4096:4096
#               these VMs lack CAP_SYS_RESOURCE and Podman's defaults exceed
#               the hard limits (nofile 20000 here): runc fails with "error
#               setting rlimits ... operation not permitted". The agent sets
#               the same ulimits on app containers; this line also covers the
#               infra container, which the API gives no rlimits field.
#   cgroup_manager cgroupfs, events_logger file
#               there is no systemd or journald on these hosts; Podman falls
#               back to both on its own, but saying so avoids the probing.
#               Memory and CPU limits are enforced with runc + cgroupfs
#               (checked by the runtime tests through the container's own
#               cgroup files).
#   exit_command_delay 5
#               each finished exec session (every exec probe) lingers this
#               long; 4.3.1 has no API to remove one, and each one left adds
#               about a second to removing its container (measured: 3 sessions
#               made a pod removal take 3.4 s instead of 0.25 s). The default,
#               300 s, would let probes pile up thousands of sessions.
set -eu

say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (berth uses rootful Podman)"
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: only Debian 12 and Ubuntu are supported"

# Packages: install only what is missing, in one apt-get run.
missing=""
for pkg in podman runc iptables iproute2 catatonit netavark git; do
	if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		say "$pkg: already installed"
	else
		missing="$missing $pkg"
	fi
done
if [ -n "$missing" ]; then
	say "installing:$missing"
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	# With its recommends, as measured on these hosts: they bring netavark
	# (the network stack berth's pod networking is tested with) rather
	# than leaving apt free to satisfy podman with the CNI plugins.
	# shellcheck disable=SC2086 # word splitting intended
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi
say "podman $(podman version --format '{{.Client.Version}}' 2>/dev/null || echo '?'), $(runc --version | head -n1)"

# Kernel and host checks. These only report: fixing them needs a decision
# (a kernel, a boot parameter) that a setup script should not take.
problems=0
problem() { printf 'setup: PROBLEM: %s\n' "$*" >&2; problems=$((problems + 1)); }

if ! grep -qw overlay /proc/filesystems; then
	if modprobe overlay 2>/dev/null && grep -qw overlay /proc/filesystems; then
		say "loaded the overlay module (Podman's storage driver)"
	else
		problem "no overlay filesystem: Podman's overlay storage driver will not work"
	fi
fi
[ -e /proc/self/ns/net ] || problem "no network namespaces: pods cannot get their own network"

# cgroups: v2 (unified) or v1 with memory and cpu controllers, for limits.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	for c in memory cpu pids; do
		grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || problem "cgroup v2 controller $c is not available"
	done
	say "cgroups: v2 (unified)"
else
	for c in memory cpu pids; do
		[ -d "/sys/fs/cgroup/$c" ] || problem "cgroup v1 controller $c is not mounted"
	done
	say "cgroups: v1 or hybrid (runc and the cgroupfs manager are required; containers.conf sets both)"
fi

if ! iptables -t nat -S >/dev/null 2>&1; then
	problem "iptables cannot read the nat table: port forwarding and Services will not work"
fi

# Report the hard limits so a too-low host is noticed before runc fails.
# (From /proc: dash's ulimit has no -u.)
nofile=$(awk '/^Max open files/ {print $5}' /proc/self/limits)
nproc=$(awk '/^Max processes/ {print $4}' /proc/self/limits)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt 1024 ]; then problem "hard nofile limit $nofile is below the 1024 berth gives containers"; fi
if [ "$nproc" != unlimited ] && [ "$nproc" -lt 4096 ]; then problem "hard nproc limit $nproc is below the 4096 berth gives containers"; fi
say "hard limits: nofile $nofile, nproc $nproc"

if [ "$problems" -gt 0 ]; then
	fail "$problems problem(s) above"
fi
say "host is ready"
