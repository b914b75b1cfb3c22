# Shared by scripts/run, scripts/test and .ci/run: install what is missing, nothing more.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

apt_install() {
    # Debian packages, only when a command is missing; needs root (or sudo).
    local missing=("$@")
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then sudo="sudo"; else
            say "missing system packages: ${missing[*]}; install them (apt-get install ${missing[*]}) and run again"
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        say "missing system packages: ${missing[*]}; install them with your package manager and run again"
        exit 1
    fi
    say "installing ${missing[*]} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

have_postgres_server() {
    command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

# ffmpeg always; PostgreSQL and Redis only when nothing answers on their loopback ports
# (we then start private ones under .data/). Extra package names may be passed.
ensure_system_packages() {
    local need=()
    command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need+=(ffmpeg)
    port_open 127.0.0.1 "${PG_PORT:-5432}" || have_postgres_server || need+=(postgresql)
    port_open 127.0.0.1 "${REDIS_PORT:-6379}" || command -v redis-server >/dev/null || need+=(redis-server)
    for pkg in "$@"; do need+=("$pkg"); done
    apt_install "${need[@]+"${need[@]}"}"
}

# A virtual environment in .venv with the project installed at the versions of requirements.lock;
# re-installed when pyproject.toml or the lock changes.
ensure_venv() {
    local extras="$1"
    local stamp=".venv/.installed-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)-${extras//,/_}"
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv"
        "$PYTHON" -m venv .venv
    fi
    if [ ! -f "$stamp" ]; then
        say "installing Python packages (.[${extras}])"
        .venv/bin/python -m pip install -q --upgrade pip >/dev/null
        .venv/bin/python -m pip install -q -c requirements.lock -e ".[${extras}]"
        rm -f .venv/.installed-*
        touch "$stamp"
    fi
}
