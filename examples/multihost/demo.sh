#!/usr/bin/env bash
# demo.sh DIR BERTH HOSTSIM: a 3-host berth cluster on this one machine.
# Three simulated hosts (network namespaces on a bridge, each with its own
# Podman) run `berth agent`; `berth controller` runs here, on the bridge,
# following a local Git repository made from examples/multihost/deploy.
# Called by `make demo-multihost`; Ctrl-C stops and removes everything.
set -euo pipefail
dir=$1 berth=$2 hostsim=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$dir" && mkdir -p "$dir"
pids=()
cleanup() {
	trap - EXIT INT TERM
	echo; echo "stopping the demo cluster..."
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

git init -q --bare -b main "$dir/repo.git"
git clone -q "$dir/repo.git" "$dir/work" 2>/dev/null
cp -r "$here/deploy" "$dir/work/deploy"
git -C "$dir/work" add deploy
git -C "$dir/work" -c user.name="berth demo" -c user.email=demo@berth.invalid commit -q -m "web on three hosts"

"$hostsim" up --name demo --nodes 3 --dir "$dir/hosts" --image localhost/berth-hello:v1 --env "$dir/hosts.env" >"$dir/hostsim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do [ -f "$dir/hosts.env" ] && break; sleep 0.5; done
[ -f "$dir/hosts.env" ] || { cat "$dir/hostsim.log"; exit 1; }
# shellcheck disable=SC1091
. "$dir/hosts.env"

server="https://$BRIDGE_ADDR:7443"
"$berth" controller --repo "file://$dir/repo.git" --path deploy --listen "$BRIDGE_ADDR:7443" \
	--data-dir "$dir/controller" --interval 10s --node-grace 15s >"$dir/controller.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do [ -f "$dir/controller/pki/admin.crt" ] && break; sleep 0.5; done
token=$("$berth" token create --data-dir "$dir/controller" --description demo)

for i in 1 2 3; do
	name="NODE_${i}_NAME" netns="NODE_${i}_NETNS" addr="NODE_${i}_ADDR" subnet="NODE_${i}_SUBNET" sock="NODE_${i}_SOCKET" data="NODE_${i}_DATADIR"
	nsenter --net="${!netns}" "$berth" agent --server "$server" --token "$token" --node-name "${!name}" \
		--podman "${!sock}" --data-dir "${!data}" --address "${!addr}" --pod-subnet "${!subnet}" \
		>"$dir/agent-${!name}.log" 2>&1 &
	pids+=($!)
done

cli="$berth --server $server --admin-dir $dir/controller"
# Deploy once the hosts have joined, so the scheduler spreads the replicas.
sleep 3
git -C "$dir/work" push -q origin main
$cli sync
cat <<MSG

A 3-host berth cluster runs on this machine (logs in $dir/*.log).
In another terminal, try:

  $cli get nodes -o wide
  $cli get pods -o wide                 # 6 replicas, 2 per host
  curl http://$NODE_1_ADDR:30090/       # the NodePort answers on every host
  $cli drain node-3                     # pods move, the Service keeps answering
  $cli uncordon node-3
  sudo kill \$(pgrep -f 'agent --server $server --token .* --node-name node-2')
                                        # lose a host: its pods come back elsewhere

Ctrl-C here removes the whole cluster.

MSG
wait "${pids[0]}"
