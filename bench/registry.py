"""The benchmarks' registry: docker-registry on loopback behind bench/delay_proxy.py, and the
processes every benchmark starts, stopped on exit (stop_all)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

from delay_proxy import DelayProxy

STARTED = []  # every long-running process we start, stopped at exit


def rmtree(p):
    if os.path.exists(p):
        shutil.rmtree(p)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    """docker-registry (distribution 2.8) on loopback with a fresh storage under `dir`, reached
    through a DelayProxy adding `delay` seconds to every request; its access log in
    `dir/registry.log` (what uploads_since counts)."""

    def __init__(self, dir, delay):
        self.dir = dir
        rmtree(self.dir)
        os.makedirs(os.path.join(self.dir, "storage"))
        self.port = free_port()
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {self.dir}/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
""")
        self.logpath = os.path.join(self.dir, "registry.log")
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        STARTED.append(self.proc)
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1)
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"registry did not start, see {self.logpath}")
                time.sleep(0.05)
        self.proxy = DelayProxy(self.port, delay).start()

    @property
    def host(self):
        return self.proxy.host

    def rchar(self):
        """Bytes the registry process has read (sockets and files) so far."""
        with open(f"/proc/{self.proc.pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
        return 0

    def log_mark(self):
        self.logf.flush()
        return os.path.getsize(self.logpath)

    def uploads_since(self, mark):
        """Blob upload requests (POST/PATCH/PUT on /blobs/uploads/) logged after mark."""
        time.sleep(0.2)  # let the access log catch up
        with open(self.logpath, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        n = 0
        for line in text.splitlines():
            if "/blobs/uploads/" in line and re.search(r'"(POST|PATCH|PUT) ', line):
                n += 1
        return n

    def stop(self):
        self.proxy.stop()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()
        # keep config and log for inspection, drop the (possibly GB-sized) storage
        rmtree(os.path.join(self.dir, "storage"))
        if self.proc in STARTED:
            STARTED.remove(self.proc)


def stop_all(*_):
    for p in list(STARTED):
        try:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
        except Exception:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except Exception:
                pass
