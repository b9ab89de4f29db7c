#!/usr/bin/env bash
# demo.sh DIR BERTH: make a local Git repository from examples/hello/deploy
# (a bare repo to follow and a working clone to edit), then run `berth up`
# following it. Called by `make demo`; safe to run again (it keeps the repo).
set -euo pipefail
dir=$1 berth=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
if [ ! -d "$dir/repo.git" ]; then
	git init -q --bare -b main "$dir/repo.git"
	git clone -q "$dir/repo.git" "$dir/work" 2>/dev/null
	mkdir -p "$dir/work/deploy"
	cp "$here"/hello/deploy/*.yaml "$dir/work/deploy/"
	git -C "$dir/work" add deploy
	git -C "$dir/work" -c user.name="berth demo" -c user.email=demo@berth.invalid commit -q -m "Deploy hello v1"
	git -C "$dir/work" push -q origin main
fi
cat <<MSG

berth is starting, following file://$dir/repo.git (branch main, path deploy/).
In another terminal, try:

  $berth status                       # revision, sync state, rollout health
  $berth get pods -n hello -o wide     # the 3 replicas and their pod IPs
  curl http://<pod IP>:8080/           # the app answers

  cd $dir/work
  sed -i 's/berth-hello:v1/berth-hello:v2/' deploy/deployment.yaml
  git commit -qam "hello v2" && git push -q
  $berth sync && watch -n1 $berth status   # a rolling update, one pod at a time

Ctrl-C stops berth; the pods keep running. \`make demo-clean\` removes them.

MSG
exec "$berth" up --repo "file://$dir/repo.git" --path deploy --data-dir "$dir/data" --interval 10s
