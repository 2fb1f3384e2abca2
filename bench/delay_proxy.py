#!/usr/bin/env python3
"""An HTTP/1.1 proxy in front of a registry that adds a fixed delay to every request (the round
trip of a distant registry) and records each request's start and end, so a push's request count
and its round trips (the longest chain of requests that ran one after another) can be counted.

    DelayProxy(upstream_port, delay_s).start() -> .port; .mark(); .requests_since(mark)

Keeps the client's Host header, so the registry's Location headers point back at the proxy.
"""

import http.client
import http.server
import threading
import time

HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
       "upgrade"}
CHUNK = 1 << 20


def round_trips(spans, slack=0.0):
    """The longest chain of requests each starting after the previous one ended: the round trips
    a client waited for one after another. (Greedy by earliest end is optimal for this.) A
    request counts as after another when it started at most `slack` seconds before that one's
    recorded end: the end is taken after the proxy has sent the response, so a client's next
    request can start a fraction of a millisecond "before" it; requests really in flight
    together overlap by about the whole delay."""
    n, end = 0, float("-inf")
    for start, stop in sorted(spans, key=lambda s: s[1]):
        if start >= end - slack:
            n, end = n + 1, stop
    return n


class DelayProxy:
    def __init__(self, upstream_port, delay_s):
        self.upstream = upstream_port
        self.delay = delay_s
        self.log = []  # (start, end, method, path, status)
        self.inflight = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: with Nagle on, a small body waits
            # for the client's delayed ACK (~40 ms), which no registry makes a client wait.
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def handle_any(self):
                start, status = time.monotonic(), None
                with proxy.lock:
                    proxy.inflight += 1
                try:
                    time.sleep(proxy.delay)
                    status = proxy.forward(self)
                finally:
                    with proxy.lock:
                        proxy.inflight -= 1
                        proxy.log.append((start, time.monotonic(), self.command, self.path, status))

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any

        class Server(http.server.ThreadingHTTPServer):
            # socketserver's default backlog of 5 delays a client opening more connections at
            # once (a registry's is thousands).
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def mark(self):
        with self.lock:
            return len(self.log)

    def requests_since(self, mark):
        """The requests logged since `mark`, once none is in flight: a request is logged only
        after its response is sent, which a client that has exited may not have waited for."""
        deadline = time.monotonic() + 2
        while True:
            with self.lock:
                if self.inflight == 0 or time.monotonic() > deadline:
                    return list(self.log[mark:])
            time.sleep(0.005)

    def forward(self, h):
        body = request_body(h)
        up = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=300,
                                        blocksize=CHUNK)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP}
        up.request(h.command, h.path, body=body, headers=headers)
        r = up.getresponse()
        h.send_response_only(r.status, r.reason)
        length = r.getheader("Content-Length")
        data = None
        if h.command != "HEAD" and length is None:
            data = r.read()
            length = str(len(data))
        for k, v in r.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                h.send_header(k, v)
        if length is not None:
            h.send_header("Content-Length", length)
        h.end_headers()
        if h.command != "HEAD":
            if data is not None:
                h.wfile.write(data)
            else:
                while True:
                    b = r.read(CHUNK)
                    if not b:
                        break
                    h.wfile.write(b)
        h.wfile.flush()
        up.close()
        return r.status


def request_body(h):
    """The request body: a reader of Content-Length bytes, or a generator of the chunks of a
    chunked one (sent on chunked, as it arrives), or None when there is none."""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        def chunks():
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield h.rfile.read(size)
                h.rfile.readline()
        return chunks()
    n = int(h.headers.get("Content-Length") or 0)
    if n == 0:
        return None if h.command in ("GET", "HEAD", "DELETE") else b""
    return SizedReader(h.rfile, n)


class SizedReader:
    """Exactly n bytes of a stream, read in chunks as http.client sends them."""

    def __init__(self, f, n):
        self.f, self.left = f, n

    def read(self, size=-1):
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        b = self.f.read(size)
        self.left -= len(b)
        return b
