#!/usr/bin/env sh
# Talk to a running voxpool with curl. BASE defaults to the local server.
set -eu
BASE=${BASE:-http://localhost:5005}

# Speech in OpenAI's shape, as a WAV file.
curl -sS "$BASE/v1/audio/speech" -H 'Content-Type: application/json' \
  -d '{"model":"tts-1","input":"Hello from voxpool.","voice":"alloy","response_format":"wav"}' \
  -o hello.wav -w 'speech: HTTP %{http_code}\n'

# The model lifecycle.
curl -sS "$BASE/model/status"; echo
curl -sS -X POST "$BASE/model/timeout" -H 'Content-Type: application/json' -d '{"timeout_seconds": 600}'; echo
curl -sS -X POST "$BASE/model/unload"; echo
