#!/usr/bin/env bash
# Builds kube-apiserver from the k8s.io/kubernetes Go module into a cache folder keyed by the version, for the
# suite that runs a real API server (issue 17), and prints the binary's path. A binary already in the cache is
# reused. k8s.io/kubernetes is not meant to be required as a module: its go.mod points every k8s.io/* staging
# module at ./staging/src, so a throwaway module requires it and replaces each staging module with its published
# release (v0.X.Y for v1.X.Y). About 25 minutes on 2 cores, most of it compiling.
#
#   test/k8s/kube-apiserver.sh            # build (or reuse) and print the path
#   test/k8s/kube-apiserver.sh -resolve   # resolve the modules only, and build nothing
#
# Environment: K8S_VERSION (default 1.37.2), AGENTAUTH_K8S_CACHE (default /var/cache/agentauth/kube-apiserver).
set -euo pipefail

version=${K8S_VERSION:-1.37.2}
cache=${AGENTAUTH_K8S_CACHE:-/var/cache/agentauth/kube-apiserver}/v$version
bin=$cache/kube-apiserver
resolve_only=false
[ "${1:-}" = "-resolve" ] && resolve_only=true

if [ -x "$bin" ] && ! $resolve_only; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# One build at a time per version: a second caller waits for the first and then reuses its binary.
exec 9>"$cache/.lock"
flock 9
if [ -x "$bin" ] && ! $resolve_only; then
  echo "$bin"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export GOFLAGS=-mod=mod CGO_ENABLED=0
go mod init agentauth.invalid/kube-apiserver-build >/dev/null 2>&1

upstream=$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -n "$upstream" ] || { echo "kube-apiserver.sh: cannot download k8s.io/kubernetes@v$version's go.mod" >&2; exit 1; }
staging=$(sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*|\1|p' "$upstream")
[ -n "$staging" ] || { echo "kube-apiserver.sh: no staging replace lines in $upstream" >&2; exit 1; }

edits=(-require="k8s.io/kubernetes@v$version")
for m in $staging; do
  edits+=(-replace="$m=$m@v0.${version#1.}")
done
go mod edit "${edits[@]}"
# Resolves every module the command imports (and only those: staging modules it does not import are never fetched).
go list -deps k8s.io/kubernetes/cmd/kube-apiserver >/dev/null
echo "kube-apiserver.sh: modules of k8s.io/kubernetes@v$version resolved" >&2
if $resolve_only; then
  exit 0
fi

go build -trimpath -o "$bin.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$bin.tmp" "$bin"
echo "$bin"
