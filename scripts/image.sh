#!/usr/bin/env bash
# Builds the nplus1 OCI image from scratch, with no base image to pull: a
# fully static binary (cgo, glibc linked statically, Go's own DNS resolver)
# and the CA certificates of the build machine, run as an unprivileged user.
# The Dockerfile builds the same layout on machines with a registry.
#
#   scripts/image.sh [--tag NAME] [--archive FILE] [--root DIR] [--out DIR] [--binary-only]
#
#   --tag NAME      image name in local storage (default localhost/nplus1:dev)
#   --archive FILE  also write the image as an OCI archive (podman load, skopeo)
#   --root DIR      container storage of its own (buildah --root), vfs driver
#   --out DIR       where the static binary is built (default ~/.cache/nplus1/image)
#   --binary-only   build the static binary (DIR/nplus1) and stop
#
# Needs Go, a C compiler and the static C library (libc6-dev), and buildah
# (scripts/deps.sh installs it). Prints the binary's and the image's size.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=localhost/nplus1:dev
archive=""
root=""
out="${XDG_CACHE_HOME:-$HOME/.cache}/nplus1/image"
binary_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--tag) tag="$2"; shift 2 ;;
	--archive) archive="$2"; shift 2 ;;
	--root) root="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	--binary-only) binary_only=1; shift ;;
	*) echo "image.sh: unknown argument $1; see the comment at the top of scripts/image.sh" >&2; exit 2 ;;
	esac
done

mkdir -p "$out"
bin="$out/nplus1"
# netgo, osusergo: Go's own resolver and user lookup, so that the static
# glibc never loads NSS modules (which a static binary cannot);
# grpcnotrace: gRPC (which the OTLP exporter's protobuf package links in,
# unused) without its debug pages, whose templates keep every exported
# method in the binary: 4 MB less. The same flags as the Dockerfile's.
CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo,grpcnotrace \
	-ldflags '-s -w -linkmode external -extldflags "-static"' \
	-o "$bin" ./cmd/nplus1
if LC_ALL=C readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
	echo "image.sh: $bin is dynamically linked" >&2
	exit 1
fi
echo "binary: $bin $(stat -c %s "$bin") bytes, static"
[ $binary_only -eq 1 ] && exit 0

ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
	echo "image.sh: $ca missing: install the Debian package ca-certificates" >&2
	exit 1
fi
command -v buildah >/dev/null 2>&1 || { echo "image.sh: buildah missing: run scripts/deps.sh" >&2; exit 1; }

b=(buildah)
if [ -n "$root" ]; then
	b+=(--root "$root" --runroot "$root/run" --storage-driver vfs)
fi
ctr=$("${b[@]}" from scratch)
trap '"${b[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
"${b[@]}" copy --chmod 0755 "$ctr" "$bin" /usr/local/bin/nplus1 >/dev/null
"${b[@]}" copy --chmod 0644 "$ctr" "$ca" /etc/ssl/certs/ca-certificates.crt >/dev/null
version=$("$bin" version | awk 'NR == 1 { print $2 }')
"${b[@]}" config \
	--user 10001:10001 \
	--workingdir / \
	--entrypoint '["/usr/local/bin/nplus1"]' \
	--cmd '["proxy", "--listen", "0.0.0.0:6432", "--http", "0.0.0.0:9632"]' \
	--port 6432/tcp --port 9632/tcp \
	--label org.opencontainers.image.title=nplus1 \
	--label "org.opencontainers.image.version=$version" \
	--label "org.opencontainers.image.description=PostgreSQL proxy that reports N+1 queries" \
	"$ctr"
"${b[@]}" commit --quiet --format oci "$ctr" "$tag" >/dev/null
echo "image: $tag $("${b[@]}" images --format '{{.Size}}' "$tag")"
if [ -n "$archive" ]; then
	rm -f "$archive"
	"${b[@]}" push --quiet "$tag" "oci-archive:$archive:$tag"
	echo "archive: $archive $(stat -c %s "$archive") bytes"
fi
