#!/usr/bin/env bash
# build-minio.sh VERSION DIR builds the MinIO server (test-only: it is under
# the AGPL and is run as a program by internal/miniotest, never imported)
# into DIR/minio, unless it is there already. go install first; if that
# version's go.mod has replace directives (which go install refuses), from a
# throwaway module instead.
set -euo pipefail
version=$1
dir=$2
if [[ -x "$dir/minio" ]]; then exit 0; fi
mkdir -p "$dir"
start=$SECONDS
echo "building MinIO $version into $dir (once; takes minutes)" >&2
go=${GO:-go}
if ! GOBIN="$dir" GOFLAGS= GOWORK=off "$go" install "github.com/minio/minio@$version"; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && "$go" mod init minio-build >/dev/null 2>&1 &&
    "$go" get "github.com/minio/minio@$version" &&
    "$go" build -o "$dir/minio" github.com/minio/minio)
fi
"$dir/minio" --version >&2 || true
echo "MinIO built in $((SECONDS - start)) s" >&2
