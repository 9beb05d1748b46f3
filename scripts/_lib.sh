# Shared by scripts/test and scripts/bench: idempotent set-up of a fresh machine.
# Sourced, not run. Every step that reaches a registry is retried, since a registry
# hiccup should cost a retry, not a red run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RESILIENCE_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

retry() {  # retry N CMD...: run CMD up to N times, 5 s, 10 s, ... apart
  local n=$1; shift
  local i
  for ((i = 1; i <= n; i++)); do
    if "$@"; then return 0; fi
    echo "retry: attempt $i/$n failed: $*" >&2
    [ "$i" -lt "$n" ] && sleep $((5 * i))
  done
  return 1
}

log() { printf '\n==> %s\n' "$*" >&2; }

ensure_apt() {  # ensure_apt PKG...: install Debian packages that are missing
  local missing=()
  local p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  # Bounded: a registry that stops answering costs a retry, not a hung run.
  retry 3 timeout 600 apt-get update -qq
  retry 3 timeout 900 env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_venv() {  # the project and its dev/bench extras in $VENV
  if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    log "pip install -e .[dev]"
    retry 3 timeout 600 "$PY" -m pip install -q --upgrade pip
    retry 3 timeout 1200 "$PY" -m pip install -q -e "$ROOT[dev]"
    touch "$stamp"
  fi
}

ensure_system_tools() {  # what the fault toolkit needs: iptables and iproute2
  ensure_apt iptables iproute2 procps
}

ensure_browser() {  # the status page's browser test: headless chromium and its driver
  ensure_apt chromium chromium-driver
}

ensure_servers() {  # ensure_servers NAME...: install real servers through the harness
  # (each installer retries its own registry steps and bounds them; this retries the whole)
  log "resilience servers install $*"
  retry 2 "$PY" -m resilience servers install "$@"
}
