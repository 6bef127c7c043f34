"""An HTTP proxy on 127.0.0.1 in front of a local S3 server (moto) that injects faults into
bucket listings, for tests of what the tools do when a listing page fails.

    fault_proxy.py UPSTREAM_PORT LOG_FILE [FAULT ...]

Prints the port it listens on (one line), then serves until killed. Every request is forwarded
to 127.0.0.1:UPSTREAM_PORT unchanged; each listing request (a GET on a bucket with `prefix` or
`delimiter`) is numbered per (bucket, prefix): page 1 has no `marker` / `continuation-token`,
every request with one is the next page. A FAULT is `KIND:PAGE[:TIMES]`: the listing pages
numbered PAGE get KIND, TIMES times in all (default: every time):

    500, 503   that HTTP status with an S3 error body instead of the page
    stall      no byte for a long time (STALL_SECONDS), then the connection closes
    truncate   the page's headers (with its full Content-Length), half its body, then a close
    garble     the page with bytes flipped in its middle (XML that no longer parses)
    size       the page well-formed but every <Size> one more than it is (a quietly wrong page)

One line per request goes to LOG_FILE: `<page or -> <fault or ok> <method> <path?query>`.
"""

import http.client
import http.server
import socketserver
import sys
import threading
import time
import urllib.parse

STALL_SECONDS = 120
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}

upstream_port = int(sys.argv[1])
log_path = sys.argv[2]
faults = []  # [kind, page, times left or None]
for spec in sys.argv[3:]:
    parts = spec.split(":")
    faults.append([parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else None])

lock = threading.Lock()
pages = {}  # (bucket, prefix) -> last page number served


def listing_page(path, query):
    """The page number of a listing request, or None for any other request."""
    bucket = path.strip("/").split("/")[0]
    if "/" in path.strip("/") or not ("prefix" in query or "delimiter" in query):
        return None
    key = (bucket, query.get("prefix", [""])[0])
    with lock:
        if "marker" in query or "continuation-token" in query:
            pages[key] = pages.get(key, 1) + 1
        else:
            pages[key] = 1
        return pages[key]


def fault_for(page):
    if page is None:
        return None
    with lock:
        for f in faults:
            if f[1] == page and (f[2] is None or f[2] > 0):
                if f[2] is not None:
                    f[2] -= 1
                return f[0]
    return None


def log(line):
    with lock:
        with open(log_path, "a") as out:
            out.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        page = listing_page(url.path, query)
        fault = fault_for(page)
        log(f"{page if page is not None else '-'} {fault or 'ok'} {self.command} {self.path}")

        if fault in ("500", "503"):
            payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
                       b"<Message>injected by fault_proxy</Message></Error>")
            self.send_response(int(fault))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if fault == "stall":
            time.sleep(STALL_SECONDS)
            self.close_connection = True
            return

        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()

        if fault == "garble" and data:
            data = bytearray(data)
            for i in range(len(data) // 3, len(data) // 3 + 16):
                data[i] ^= 0x5A
            data = bytes(data)
        elif fault == "size":
            text = data.decode("utf-8")
            out, rest = [], text
            while "<Size>" in rest:
                head, _, tail = rest.partition("<Size>")
                number, _, rest = tail.partition("</Size>")
                out.append(f"{head}<Size>{int(number) + 1}</Size>")
            data = ("".join(out) + rest).encode("utf-8")

        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                continue
            self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
