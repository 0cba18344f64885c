# Shared by scripts/serve and scripts/test: make sure the system packages and the virtualenv are there.
# Idempotent: a second run installs nothing and takes about a second.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

# Debian packages the code needs at run time (kept in one place; see docs/deploy.md for what each is for).
APT_PACKAGES=(
  postgresql-client  # pg_isready/psql, used by scripts/test and handy for operators
  libespeak-ng1      # the default TTS engine, loaded with ctypes (voiceivr/speech/tts/espeak.py)
  espeak-ng-data     # its voices and pronunciation dictionaries
  kamailio           # the SIP dispatcher `voiceivr serve` runs in front of its workers (core modules suffice)
  openssl            # self-signed certificates for SIP over TLS (tests; operators' own certificates)
  chromium           # headless browser for the console's browser tests (tests/test_console_browser.py)
  chromium-driver    # chromedriver, which selenium (dev extra) drives it with
)

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*  (run as root or install sudo)"; return 1; fi
}

apt_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  printf '%s\n' "${missing[@]}"
}

ensure_apt() {
  local missing
  mapfile -t missing < <(apt_missing "$@" | sed '/^$/d')
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
    || { as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y --no-install-recommends "${missing[@]}"; }
}

find_python() {
  local c
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$c"; return 0
    fi
  done
  log "Python 3.11 is required (Debian bookworm: apt-get install python3 python3-venv)"; return 1
}

ensure_venv() {
  if [[ ! -x "$PY" ]]; then
    local py; py=$(find_python)
    log "creating $VENV"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"; ensure_apt python3-venv; "$py" -m venv "$VENV"
    fi
    "$PY" -m pip install -q --upgrade pip
  fi
  # Reinstall only when the requirements changed.
  local stamp="$VENV/.voiceivr-installed" want
  want=$(cat setup.cfg pyproject.toml scripts/_bootstrap.sh | sha256sum | cut -d' ' -f1)
  if [[ ! -f "$stamp" || $(cat "$stamp") != "$want" ]]; then
    log "installing voiceivr and its dependencies into .venv"
    "$PY" -m pip install -q -e ".[dev]"
    # The end-of-turn model (call.turn_detector = smart_turn; voiceivr/speech/endofturn.py) is a file inside the
    # pipecat-ai wheel (BSD-2-Clause). Only the file is used, so none of pipecat's dependencies are installed.
    "$PY" -m pip install -q --no-deps "pipecat-ai==1.14.0"
    echo "$want" > "$stamp"
  fi
}

# Debian starts a package's service on install. A system Kamailio would sit on port 5060 with Debian's
# sample configuration; `voiceivr serve` runs its own Kamailio in the foreground instead. So: install with
# service starts refused (policy-rc.d, only if the machine has none), and disable the unit where systemd runs.
ensure_kamailio_quiet() {
  local guard=""
  if [[ -n $(apt_missing kamailio | sed '/^$/d') && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# voiceivr bootstrap: no service starts while installing\nexit 101\n' \
      | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    guard=1
  fi
  ensure_apt "$@" || { [[ -n $guard ]] && as_root rm -f /usr/sbin/policy-rc.d; return 1; }
  [[ -n $guard ]] && as_root rm -f /usr/sbin/policy-rc.d
  if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet kamailio 2>/dev/null; then
    log "disabling the system kamailio service (voiceivr serve runs its own)"
    as_root systemctl disable --now kamailio >/dev/null 2>&1 || true
  fi
  return 0
}

bootstrap() {
  ensure_kamailio_quiet "${APT_PACKAGES[@]}"
  ensure_venv
}
