#!/usr/bin/env bash
# Set up everything on a fresh machine, then run the demo or the tests.
#
#   sudo bash cluster/bootstrap.sh demo    # the main job: the demo on an embedded local Ray
#   sudo bash cluster/bootstrap.sh test    # lint-imports, mypy, then the whole test suite (real Ray, cgroups, LXC)
#   sudo bash cluster/bootstrap.sh setup   # only install
#
# As root it installs the Debian packages it needs (once); it always makes the venv
# `.venv` beside this repository and installs the project into it (again only
# when pyproject.toml changed). Anything after the verb is passed on (to `sc demo`
# or to pytest).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
verb=${1:-demo}
shift || true

APT_PACKAGES=(python3-venv python3-dev build-essential pkg-config lxc lxc-dev busybox-static chromium
              nginx wrk sysbench redis-server)  # the last four: `sc bench apps`; redis-server also for `sc up --gcs-redis`
# tests/cluster: test hosts in network namespaces (ip, nsenter), `ray up` onto them over SSH (sshd, rsync)
APT_PACKAGES+=(iproute2 util-linux openssh-server openssh-client rsync)

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }

install_debian() {
  [ "$(id -u)" -eq 0 ] || { log "not root: skipping apt packages (${APT_PACKAGES[*]})"; return; }
  command -v apt-get >/dev/null || { log "no apt-get: install ${APT_PACKAGES[*]} yourself"; return; }
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
    # `sc bench apps` starts its own nginx and redis-server in containers; the system
    # services the packages may have started would sit in the root cgroup on ports 80 and 6379.
    for svc in nginx redis-server; do
      case " ${missing[*]} " in *" $svc "*)
        systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true ;;
      esac
    done
  fi
}

install_python() {
  local py=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($py --version)"
    "$py" -m venv .venv
  fi
  local stamp=.venv/.sc-installed want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "pip install -e .[test,lxc] (about 700 MB the first time)"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[test,lxc]"
    echo "$want" > "$stamp"
  fi
}

prepare_lxc() {
  # The LXC tests and `sc demo --backend lxc` create busybox containers offline
  # (template from liblxc-common, busybox from busybox-static) with no network
  # (lxc.net.0.type = empty) and AppArmor unconfined: no bridge, no image download.
  # Only the container directory must exist.
  command -v lxc-config >/dev/null || return 0
  [ "$(id -u)" -eq 0 ] || return 0
  mkdir -p "$(lxc-config lxc.lxcpath)"
}

install_debian
prepare_lxc
install_python
export PATH="$root/.venv/bin:$PATH"

case "$verb" in
  setup) log "ready: .venv/bin/sc --help" ;;
  demo) exec .venv/bin/sc demo "$@" ;;
  test)
    log "lint-imports (.importlinter)"
    .venv/bin/lint-imports
    log "mypy (pyproject.toml [tool.mypy])"
    .venv/bin/mypy
    log "pytest (the multi-host tests over ~2 min, marked cluster_long, run with: test-long)"
    exec .venv/bin/python -m pytest -q -m "not cluster_long" "$@"
    ;;
  test-long)
    log "pytest -m cluster_long (launcher, long network outage, head crash without Redis: ~5 min)"
    exec .venv/bin/python -m pytest -q -m cluster_long "$@"
    ;;
  *) log "unknown verb $verb (demo | test | test-long | setup)"; exit 2 ;;
esac
