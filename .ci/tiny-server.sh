# Sourced by the CI checks that talk to a real server: `tiny_server PACKAGES...` makes
# a throwaway folder ($work, removed on exit), a venv with the given pip packages
# ($work/venv), installs the tiny Kokoro and Turbo checkpoints of the test fixtures,
# and starts the tests' debug voxpool on them at http://127.0.0.1:$port.
tiny_server() {
  local bin=${VOXPOOL_CI_BIN:-target/debug/voxpool}
  [ -x "$bin" ] || cargo build
  work=$(mktemp -d /tmp/voxpool-ci.XXXXXX)
  server_pid=
  trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q safetensors==0.7.0 numpy==2.4.6 "$@"
  bash .ci/tiny-models.sh "$work/models" "$work/venv/bin/python"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  VOXPOOL_HOST=127.0.0.1 PORT=$port VOXPOOL_MODELS_DIR="$work/models" \
    VOXPOOL_DB_URL="sqlite:///$work/voxpool.db" "$bin" serve >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health')" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "voxpool did not start:"; cat "$work/server.log"; return 1
}
