#!/usr/bin/env bash
# Installs what citydash needs on Debian/Ubuntu; idempotent, seconds when all is there.
#   - Debian packages: PostgreSQL server + server-dev, cmake, mosquitto, nginx (the front server
#     of `make run` and the tests), redis-server
#     (the optional shared cache; the tests run one), chromium + driver and a Japanese font
#     (fonts-ipafont-gothic) so pages in ja render in the browser tests and screenshots
#   - TimescaleDB for the installed PostgreSQL: the distribution's package when it has one,
#     otherwise built (Apache edition) from Debian 13's `timescaledb` source package
#   - the virtualenv .venv from requirements-test.lock (hash-checked; the project is not installed)
#   - axe-core (npm pack, pinned) into var/vendor/ for the accessibility browser test
# Called by `make deps` (and so by `make run` and `make test`).
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

say() { printf 'citydash setup: %s\n' "$*" >&2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $APT_UPDATED -eq 0 ]; then
    say "apt-get update"
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  say "installing ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# 1. PostgreSQL server: the newest one installed, else the distribution's default.
pg_version() {
  ls -1 /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -n 1
}
if [ -z "$(pg_version)" ] || [ ! -x "/usr/lib/postgresql/$(pg_version)/bin/postgres" ]; then
  apt_install postgresql
fi
PG=$(pg_version)
[ -n "$PG" ] || { say "no PostgreSQL server found after installing postgresql"; exit 1; }

apt_install "postgresql-$PG" "postgresql-server-dev-$PG" cmake gcc make mosquitto redis-server nginx \
  chromium chromium-driver fonts-ipafont-gothic xz-utils ca-certificates python3-venv util-linux

# Mosquitto, Redis and nginx are run by citydash as user processes; the distribution's services are not needed.
for service in mosquitto redis-server nginx; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled "$service" >/dev/null 2>&1; then
    $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done

# 2. TimescaleDB
PKGLIBDIR=$("/usr/lib/postgresql/$PG/bin/pg_config" --pkglibdir 2>/dev/null || pg_config --pkglibdir)
if [ ! -e "$PKGLIBDIR/timescaledb.so" ]; then
  if apt-cache show "postgresql-$PG-timescaledb" >/dev/null 2>&1; then
    apt_install "postgresql-$PG-timescaledb"
  else
    say "building TimescaleDB (Apache edition) from Debian 13's source package for PostgreSQL $PG"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -e "$keyring" ] || apt_install debian-archive-keyring
    echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian trixie main" > "$work/sources.list"
    mkdir -p "$work/lists/partial"
    apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
    $SUDO apt-get -qq "${apt_opts[@]}" update
    (cd "$work" && $SUDO apt-get -qq "${apt_opts[@]}" source --download-only timescaledb >/dev/null)
    mkdir "$work/src"
    tar -xf "$work"/timescaledb_*.orig.tar.* -C "$work/src" --strip-components=1
    cmake -S "$work/src" -B "$work/build" -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
      -DWARNINGS_AS_ERRORS=OFF -DCMAKE_BUILD_TYPE=Release \
      -DPG_CONFIG="/usr/lib/postgresql/$PG/bin/pg_config" >"$work/cmake.log" 2>&1 \
      || { tail -n 30 "$work/cmake.log"; exit 1; }
    make -C "$work/build" -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log"; exit 1; }
    $SUDO make -C "$work/build" install >/dev/null
    say "TimescaleDB installed into $PKGLIBDIR"
  fi
fi

# 3. Python virtualenv: exactly the packages of requirements-test.lock (runtime + tests + bench,
#    every transitive package pinned with its hashes; `make locks` regenerates it). The project
#    itself is not installed into it: the tests and `make run` import it from the checkout.
PY=${PYTHON:-python3}
LOCK=requirements-test.lock
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -e .venv/.requirements.stamp ] || ! cmp -s "$LOCK" .venv/.requirements.stamp; then
  say "installing Python packages from $LOCK"
  .venv/bin/pip install -q --disable-pip-version-check --require-hashes -r "$LOCK"
  # what the lock no longer lists (e.g. dash[testing]'s selenium 4.2 stack) is removed
  stale=$(.venv/bin/python - "$LOCK" <<'EOF'
import re, sys
from importlib.metadata import distributions
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
locked = {norm(m[1]) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", open(sys.argv[1]).read(), re.M)}
keep = locked | {"pip", "setuptools", "wheel"}
print(" ".join(sorted({d.metadata["Name"] for d in distributions() if norm(d.metadata["Name"]) not in keep})))
EOF
)
  if [ -n "$stale" ]; then
    say "removing packages not in $LOCK: $stale"
    # shellcheck disable=SC2086
    .venv/bin/pip uninstall -y -q --disable-pip-version-check $stale
  fi
  cp "$LOCK" .venv/.requirements.stamp
fi

# 4. axe-core (npm) for the public view's accessibility test, pinned, into var/vendor/ (git-ignored)
AXE_VERSION=4.14.1
AXE_DIR="var/vendor/axe-core-$AXE_VERSION"
if [ ! -s "$AXE_DIR/axe.min.js" ]; then
  command -v npm >/dev/null 2>&1 || apt_install npm
  say "fetching axe-core $AXE_VERSION (npm pack)"
  axe_tmp=$(mktemp -d)
  (cd "$axe_tmp" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null)
  tar -xzf "$axe_tmp/axe-core-$AXE_VERSION.tgz" -C "$axe_tmp"
  mkdir -p "$AXE_DIR"
  cp "$axe_tmp/package/axe.min.js" "$AXE_DIR/axe.min.js"
  rm -rf "$axe_tmp"
fi
