#!/usr/bin/python3
"""A local webhook receiver for trying Vigie out: appends every POST body as one JSON line.

usage: webhook_sink.py HOST:PORT LOGFILE
Each line: {"path": ..., "headers": {...}, "body": <parsed JSON or text>}.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    log_path = sys.argv[2]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                body = json.loads(data)
            except ValueError:
                body = data.decode("utf-8", "replace")
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"path": self.path, "headers": dict(self.headers),
                                    "body": body}, ensure_ascii=False) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args):
            pass

    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
