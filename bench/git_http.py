#!/usr/bin/env python3
"""A smart-HTTP git server and file server for bench/agent.sh, logging every request.

    git_http.py PROJECT_ROOT FILES_DIR LOG_FILE

Listens on 127.0.0.1 on a free port and prints the port once it accepts connections. Paths
under /files/ are served from FILES_DIR (sendfile); everything else goes to `git http-backend`
as a CGI. Each request is logged as `METHOD PATH` to LOG_FILE (appended, flushed).
"""
import http.server
import os
import shutil
import subprocess
import sys

root, files, log_path = sys.argv[1:4]
log = open(log_path, "a", buffering=1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def serve_file(self, path):
        full = os.path.join(files, os.path.basename(path))
        if not os.path.isfile(full):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = os.path.getsize(full)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(full, "rb") as f:
            os.sendfile(self.wfile.fileno(), f.fileno(), 0, size) if hasattr(os, "sendfile") else shutil.copyfileobj(f, self.wfile)

    def handle_any(self):
        log.write(f"{self.command} {self.path}\n")
        path, _, query = self.path.partition("?")
        if path.startswith("/files/"):
            return self.serve_file(path)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            body = b""  # libgit2 sends its POSTs chunked
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get("Content-Type") or "",
                   CONTENT_LENGTH=str(len(body)), GATEWAY_INTERFACE="CGI/1.1",
                   HTTP_GIT_PROTOCOL=self.headers.get("Git-Protocol") or "")
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    do_GET = handle_any
    do_POST = handle_any

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
