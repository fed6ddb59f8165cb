"""Notes: a tiny note-taking web service, written with deliberate security flaws.

DO NOT DEPLOY. This is the demo target Phalanx's shipped suites are tested against;
every flaw is listed in FLAWS.md with the rule expected to report it.
"""

import json
import sqlite3
import subprocess
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

from settings import DATABASE

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
        if self.path.startswith("/notes"):
            body = find_notes(params.get("author", [""])[0])
        else:
            body = disk_usage(params.get("folder", ["."])[0])
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
