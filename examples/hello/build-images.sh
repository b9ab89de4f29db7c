#!/bin/sh
# Builds the example images localhost/berth-hello:v1 and :v2 from app/.
# No registry is needed: the binary is static and the image is FROM scratch.
# Idempotent and fast: an image is rebuilt only when its build context (binary
# plus Containerfile) changed, judged by the berth.dev/context-digest label,
# the same label the Go test helpers (podmantest.BuildImage) use.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for v in v1 v2; do
	ctx="$tmp/$v"
	mkdir -p "$ctx"
	(cd "$here/app" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$v" -o "$ctx/hello" .)
	cp "$here/app/Containerfile" "$ctx/Containerfile"
	# sha256sum lines of every file, sorted by path, hashed again.
	digest=$(cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
	tag="localhost/berth-hello:$v"
	have=$(podman image inspect --format '{{index .Labels "berth.dev/context-digest"}}' "$tag" 2>/dev/null || true)
	if [ "$have" = "$digest" ]; then
		echo "$tag is up to date"
		continue
	fi
	podman build -q --label "berth.dev/context-digest=$digest" -t "$tag" "$ctx" >/dev/null
	echo "built $tag"
done
