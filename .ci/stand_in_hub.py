"""A stand-in for the Hugging Face hub serving one repository from a folder, as much
of the hub's API as downloads use: python stand_in_hub.py FOLDER REPO PORT SLOW_SECONDS.
The largest file is sent slowly, over SLOW_SECONDS, so that a download can be watched."""
import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

folder, repo, port, slow = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
COMMIT = "0123456789abcdef0123456789abcdef01234567"
files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
largest = max(files, key=lambda f: len(files[f]))


class Hub(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == f"/api/models/{repo}/revision/main":
            body = json.dumps({"sha": COMMIT, "siblings": [
                {"rfilename": f, "size": len(b)} for f, b in files.items()]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        prefix = f"/{repo}/resolve/main/"
        name = path[len(prefix):] if path.startswith(prefix) else None
        if name not in files:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = files[name]
        # Weights are LFS files (ETag = SHA-256), JSON a git blob (40 hex).
        digest = hashlib.sha256(body).hexdigest()
        etag = digest[:40] if name.endswith(".json") else digest
        wanted = self.headers.get("Range", "bytes=0-")
        start = int(wanted.removeprefix("bytes=").split("-")[0] or 0)
        probe = wanted == "bytes=0-0"
        end = 1 if probe else len(body)
        part = body[start:end]
        self.send_response(206)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Range", f"bytes {start}-{max(end, 1) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if probe or name != largest:
            self.wfile.write(part)
            return
        pieces = 20
        step = max(1, len(part) // pieces)
        for i in range(0, len(part), step):
            self.wfile.write(part[i:i + step])
            self.wfile.flush()
            time.sleep(slow / pieces)


ThreadingHTTPServer(("127.0.0.1", port), Hub).serve_forever()
