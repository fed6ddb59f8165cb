"""Notes: a tiny note-taking web service, written with deliberate security flaws.

DO NOT DEPLOY. This is the demo target Phalanx's shipped suites are tested against;
every flaw is listed in FLAWS.md with the rule expected to report it.
"""

import json
import os
import sqlite3
import subprocess
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from settings import DATABASE

# Loopback unless told: Phalanx's service definition (services/app.toml) serves it on the
# run's private network.
HOST = os.environ.get("NOTES_HOST", "127.0.0.1")
PORT = 8080


def find_notes(author):
    """Notes by one author."""
    conn = sqlite3.connect(DATABASE)
    cursor = conn.cursor()
    # FLAW py-sqli: user input formatted into SQL (use a ? placeholder instead).
    query = "SELECT id, body FROM notes WHERE author = '%s'" % author
    cursor.execute(query)
    rows = cursor.fetchall()
    conn.close()
    return rows


def disk_usage(folder):
    """How much space a user's folder takes."""
    # FLAW py-shell: user input run through a shell (pass a list, without shell=True).
    output = subprocess.check_output("du -sh " + folder, shell=True)
    return output.decode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        params = parse_qs(urlparse(self.path).query)
        try:
            if self.path.startswith("/notes"):
                body = find_notes(params.get("author", [""])[0])
            else:
                body = disk_usage(params.get("folder", ["."])[0])
            status = 200
        except Exception:
            # FLAW http-error-detail: the exception and its traceback go to the client.
            body, status = {"error": traceback.format_exc()}, 500
        data = json.dumps(body).encode()
        # FLAW http-headers: no Content-Security-Policy, X-Frame-Options,
        # X-Content-Type-Options or Strict-Transport-Security.
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer((HOST, PORT), Handler).serve_forever()
