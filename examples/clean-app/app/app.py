"""Notes: the same tiny note-taking service as examples/vulnerable-app, written safely.

Phalanx's end-to-end test expects every shipped suite to pass on this folder.
"""

import json
import os
import sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from settings import DATABASE, DATA_ROOT

# Loopback unless told: Phalanx's service definition (services/app.toml) serves it on the
# run's private network.
HOST = os.environ.get("NOTES_HOST", "127.0.0.1")
PORT = 8080

# What a browser is told about every answer: no scripts, frames or sniffing, HTTPS only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Cache-Control": "no-store",
}


def find_notes(author):
    """Notes by one author: the value is passed as a parameter, never formatted in."""
    with sqlite3.connect(DATABASE) as conn:
        cursor = conn.execute("SELECT id, body FROM notes WHERE author = ?", (author,))
        return cursor.fetchall()


def disk_usage(folder):
    """How much space a user's folder takes, in bytes: only folders under DATA_ROOT,
    added up in Python rather than by running a command."""
    root = os.path.realpath(os.path.join(DATA_ROOT, folder))
    if not root.startswith(DATA_ROOT + os.sep):
        raise ValueError("folder outside the data root")
    total = 0
    for path, _dirs, files in os.walk(root):
        total += sum(os.lstat(os.path.join(path, name)).st_size for name in files)
    return total


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        params = parse_qs(urlparse(self.path).query)
        try:
            if self.path.startswith("/notes"):
                body = find_notes(params.get("author", [""])[0])
            else:
                body = disk_usage(params.get("folder", ["."])[0])
            status = 200
        except ValueError:
            body, status = {"error": "bad request"}, 400
        except (OSError, sqlite3.Error):
            # Details stay in the server's log, never in the answer.
            self.log_error("request failed: %r", self.path)
            body, status = {"error": "internal error"}, 500
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer((HOST, PORT), Handler).serve_forever()
