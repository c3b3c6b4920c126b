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

# Clone a voice from a recording (REFERENCE=path to a wav/mp3/flac/ogg of more than
# 5 s; needs the chatterbox-turbo files), speak with it as Ogg Opus, then delete it.
if [ -n "${REFERENCE:-}" ]; then
  voice=$(curl -sS "$BASE/v1/audio/voices" -F name=Example -F model=chatterbox-turbo \
    -F "audio_sample=@$REFERENCE" | sed -n 's/.*"id":"\(voice_[0-9a-f]*\)".*/\1/p')
  curl -sS "$BASE/v1/audio/speech" -H 'Content-Type: application/json' \
    -d "{\"model\":\"tts-1\",\"input\":\"Hello in a cloned voice.\",\"voice\":{\"id\":\"$voice\"},\"response_format\":\"opus\"}" \
    -o cloned.opus -w 'cloned voice: HTTP %{http_code}\n'
  curl -sS -X DELETE "$BASE/v1/audio/voices/$voice"; echo
fi
