#!/usr/bin/env bash
# Build every dodoor image locally, without any registry (docs/design.md §9):
#   dodoor-base:bookworm  debootstrap minbase rootfs fed to `docker import`
#   dodoor:latest         the project in a venv, installed from a host-built wheelhouse
#   dodoor-task:busybox   busybox-static in an imported scratch rootfs (sleep, CPU burn, memory touch)
#   dodoor-task:python    numpy functions (float ops, matrix multiply, linear solve)
#   dodoor-prometheus:latest  Debian's prometheus package on the base (the cluster's monitoring)
# Idempotent: an image that exists is skipped (dodoor:latest also when it was built
# from the current sources); --force rebuilds all of them. Works from any cwd.
set -euo pipefail

usage() { echo "usage: $0 [--force] [--only IMAGE ...] | --source-digest" >&2; }

FORCE=0
ONLY=()
PRINT_DIGEST=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1 ;;
    --only) shift; ONLY+=("${1:?--only needs an image name}") ;;
    # the digest dodoor:latest is labelled with (dodoor.source) when built from these
    # sources; tests compare it to tell their image from one another checkout built
    --source-digest) PRINT_DIGEST=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage; exit 2 ;;
  esac
  shift
done

COMPOSE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$COMPOSE_DIR")"
BUILD="$COMPOSE_DIR/.build"
WHEELS="$BUILD/wheels"
PROJECT_WHEEL="$BUILD/project"
SUITE="${DODOOR_DEBIAN_SUITE:-bookworm}"
MIRROR="${DODOOR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-python3}"

BASE_IMAGE="dodoor-base:bookworm"
# DODOOR_APP_IMAGE names the daemons' image otherwise (the swarm tests build their
# own tag, so that checkouts sharing one engine do not rebuild each other's image)
APP_IMAGE="${DODOOR_APP_IMAGE:-dodoor:latest}"
BUSYBOX_IMAGE="dodoor-task:busybox"
PY_TASK_IMAGE="dodoor-task:python"
PROMETHEUS_IMAGE="dodoor-prometheus:latest"

BUILT=()
SKIPPED=()
START_ALL=$SECONDS

log() { echo "[build-images] $*"; }
die() { echo "[build-images] error: $*" >&2; exit 1; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

wanted() {
  [ ${#ONLY[@]} -eq 0 ] && return 0
  local name
  for name in "${ONLY[@]}"; do [ "$name" = "$1" ] && return 0; done
  return 1
}

# Run a builder unless its image exists; records what was built and how long it took.
step() {
  local image="$1" fn="$2"
  if [ "$FORCE" -eq 0 ] && image_exists "$image"; then
    SKIPPED+=("$image")
    return 0
  fi
  local t0=$SECONDS old
  old="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
  log "building $image"
  "$fn"
  BUILT+=("$image ($((SECONDS - t0)) s)")
  # The replaced image is now untagged: drop it unless a container still uses it.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
}

[ "$PRINT_DIGEST" -eq 1 ] || docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info'"
mkdir -p "$BUILD"

build_base() {
  [ "$(id -u)" -eq 0 ] || die "building $BASE_IMAGE runs debootstrap, which needs root (run with sudo)"
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
  local rootfs="$BUILD/rootfs-$SUITE"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$BUILD/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $BUILD/debootstrap.log"
  # Package caches and lists only make the image bigger.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

# The project's runtime dependencies, read from pyproject.toml so there is one list.
project_deps() {
  "$PYTHON" - "$REPO/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    for dep in tomllib.load(fh)["project"]["dependencies"]:
        print(dep)
PY
}

# The files the dodoor wheel is built from (tracked or new, not ignored), one per line.
project_files() {
  (cd "$REPO" && git ls-files -co --exclude-standard -- \
      pyproject.toml README.md dodoor scheduler node_agent workloads \
    | while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done | sort)
}

# A digest of the project sources: dodoor:latest is rebuilt whenever it changes.
source_digest() {
  (cd "$REPO" && project_files | tr '\n' '\0' | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

image_label() {
  docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# Dependency wheels are downloaded once per dependency list; the project wheel is
# rebuilt from a copy of the sources (so the repo itself gets no build/ litter).
build_wheelhouse() {
  mkdir -p "$WHEELS"
  local deps=() digest
  mapfile -t deps < <(project_deps)
  digest="$(printf '%s\n' "${deps[@]}" | sha256sum | cut -c1-16)"
  if [ "$FORCE" -eq 1 ] || [ "$(cat "$WHEELS/.deps" 2>/dev/null)" != "$digest" ]; then
    rm -f "$WHEELS"/*.whl "$WHEELS/.deps"
    "$PYTHON" -m pip download -q --only-binary=:all: --python-version 3.11 \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux_2_28_x86_64 -d "$WHEELS" "${deps[@]}" >"$BUILD/pip.log" 2>&1 \
      || die "pip download of the dependencies failed; see $BUILD/pip.log"
    printf '%s\n' "${deps[@]}" >"$WHEELS/requirements.txt"
    echo "$digest" >"$WHEELS/.deps"
  fi
  local src="$BUILD/src"
  rm -rf "$src" "$PROJECT_WHEEL"
  mkdir -p "$src" "$PROJECT_WHEEL"
  (cd "$REPO" && project_files | tar -c -T -) | tar -C "$src" -x
  "$PYTHON" -m pip wheel -q --no-deps -w "$PROJECT_WHEEL" "$src" >>"$BUILD/pip.log" 2>&1 \
    || die "pip wheel of the project failed; see $BUILD/pip.log"
  rm -rf "$src"
}

# Assemble a build context from files and the wheelhouse, then build with no network.
docker_build() {
  local image="$1" dockerfile="$2"; shift 2
  local ctx="$BUILD/ctx-${image//[:\/]/-}"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -r "$@" "$ctx"/
  local buildlog="$BUILD/build-${image//[:\/]/-}.log"
  docker build --network none ${BUILD_LABEL:+--label "$BUILD_LABEL"} \
    -t "$image" -f "$dockerfile" "$ctx" >"$buildlog" 2>&1 \
    || die "docker build of $image failed; see $buildlog"
  rm -rf "$ctx"
}

build_app() {
  build_wheelhouse
  BUILD_LABEL="dodoor.source=$(source_digest)" \
    docker_build "$APP_IMAGE" "$COMPOSE_DIR/dodoor/Dockerfile" "$WHEELS" "$PROJECT_WHEEL"
}

build_busybox() {
  local busybox
  busybox="$(command -v busybox || true)"
  [ -n "$busybox" ] || die "busybox is missing: apt-get install -y busybox-static"
  file -L "$busybox" 2>/dev/null | grep -q 'statically linked' \
    || ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' \
    || die "$busybox is not static: apt-get install -y busybox-static"
  local rootfs="$BUILD/rootfs-busybox"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"/{bin,tmp,proc,sys,dev,etc}
  chmod 1777 "$rootfs/tmp"
  cp "$busybox" "$rootfs/bin/busybox"
  local applet
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  install -m 0755 "$COMPOSE_DIR/task-busybox/dodoor-task" "$rootfs/bin/dodoor-task"
  echo 'nobody:x:65534:65534:nobody:/tmp:/bin/sh' >"$rootfs/etc/passwd"
  echo 'nogroup:x:65534:' >"$rootfs/etc/group"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/bin' \
    --change 'USER 65534:65534' \
    --change 'CMD ["dodoor-task", "sleep", "1"]' - "$BUSYBOX_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

build_task_python() {
  ls "$WHEELS"/numpy-*.whl >/dev/null 2>&1 || build_wheelhouse
  docker_build "$PY_TASK_IMAGE" "$COMPOSE_DIR/task-python/Dockerfile" \
    "$WHEELS" "$REPO/workloads/task_functions.py"
}

# Debian's prometheus package and whatever it needs beyond the base, as .deb files.
# The host's apt resolves them against the base image's own dpkg status (not the
# host's), so exactly the missing packages are fetched; the build itself is offline.
build_prometheus() {
  [ "$(id -u)" -eq 0 ] || die "building $PROMETHEUS_IMAGE runs apt-get, which needs root (run with sudo)"
  command -v apt-get >/dev/null || die "building $PROMETHEUS_IMAGE needs a Debian host (apt-get)"
  local host_suite
  host_suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [ "$host_suite" = "$SUITE" ] \
    || die "$PROMETHEUS_IMAGE takes its packages from the host's apt, which is '$host_suite', not '$SUITE'"
  # named "debs": docker_build copies the directory itself into the context
  local debs="$BUILD/prometheus/debs" status="$BUILD/prometheus/base-dpkg-status"
  rm -rf "$BUILD/prometheus"
  mkdir -p "$debs/partial"
  docker run --rm --network none "$BASE_IMAGE" cat /var/lib/dpkg/status >"$status" \
    || die "cannot read the dpkg status of $BASE_IMAGE"
  local apt_opts=(-q -o "Dir::State::status=$status" -o "Dir::Cache::archives=$debs"
                  -o Debug::NoLocking=1 --download-only -y --no-install-recommends)
  if ! apt-get "${apt_opts[@]}" install prometheus >"$BUILD/prometheus-apt.log" 2>&1; then
    # the host's package lists may be missing or old: refresh them once
    apt-get update -qq >>"$BUILD/prometheus-apt.log" 2>&1 \
      && apt-get "${apt_opts[@]}" install prometheus >>"$BUILD/prometheus-apt.log" 2>&1 \
      || die "apt-get could not fetch prometheus; see $BUILD/prometheus-apt.log"
  fi
  rm -rf "$debs/partial" "$debs/lock"
  ls "$debs"/prometheus_*.deb >/dev/null 2>&1 || die "no prometheus .deb in $debs"
  docker_build "$PROMETHEUS_IMAGE" "$COMPOSE_DIR/prometheus/Dockerfile" "$debs"
  rm -rf "$BUILD/prometheus"
}

if [ "$PRINT_DIGEST" -eq 1 ]; then source_digest; exit 0; fi

# The base comes first: the Dockerfiles build FROM it.
if wanted "$BASE_IMAGE" || wanted "$APP_IMAGE" || wanted "$PY_TASK_IMAGE" \
    || wanted "$PROMETHEUS_IMAGE"; then
  # --force with --only rebuilds the base only when it is named itself.
  if [ ${#ONLY[@]} -gt 0 ] && ! wanted "$BASE_IMAGE"; then FORCE=0 step "$BASE_IMAGE" build_base
  else step "$BASE_IMAGE" build_base; fi
fi
if wanted "$APP_IMAGE"; then
  # An existing dodoor:latest built from other sources is stale: rebuild it.
  if image_exists "$APP_IMAGE" && [ "$(image_label "$APP_IMAGE" dodoor.source)" != "$(source_digest)" ]; then
    log "$APP_IMAGE was built from other sources: rebuilding"
    FORCE_APP=1
  fi
  if [ "${FORCE_APP:-0}" -eq 1 ]; then FORCE=1 step "$APP_IMAGE" build_app
  else step "$APP_IMAGE" build_app; fi
fi
wanted "$BUSYBOX_IMAGE" && step "$BUSYBOX_IMAGE" build_busybox
wanted "$PY_TASK_IMAGE" && step "$PY_TASK_IMAGE" build_task_python
wanted "$PROMETHEUS_IMAGE" && step "$PROMETHEUS_IMAGE" build_prometheus

for item in "${SKIPPED[@]+"${SKIPPED[@]}"}"; do log "exists, skipped: $item (use --force to rebuild)"; done
for item in "${BUILT[@]+"${BUILT[@]}"}"; do log "built: $item"; done
log "done in $((SECONDS - START_ALL)) s"
