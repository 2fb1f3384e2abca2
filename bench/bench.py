#!/usr/bin/env python3
"""ironstar side-by-side benchmark (issues 7, 15 and 21): build vs buildah and vs the deflate
floor (zlib-rs alone, bench/floor.rs), push and no-op re-push vs skopeo through a proxy that
adds a round-trip delay to every request (requests and round trips counted), peak RSS; and the
puller's side (bench/pull.py): containerd and podman pulling ironstar's and buildah's gzip and
zstd images.
Every figure that matters is a ratio of two tools measured in the same round on the same
inputs; tools alternate order from round to round and the medians over rounds are reported.

Run through bench/run.sh (it builds ironstar first).  Output: a table on stdout and
target/bench/results.json.
"""

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from delay_proxy import round_trips
from registry import STARTED, Registry, rmtree, stop_all
import pull

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "bench")
IRONSTAR = os.path.join(ROOT, "target", "release", "ironstar")
FLOOR = os.path.join(ROOT, "target", "release", "examples", "floor")
FIXTURE = os.path.join(ROOT, "bench", "fixture")
LEVEL = None  # the deflate level of ironstar and of the floor: --level, else ironstar's default
ZSTD_LEVEL = None  # ironstar's zstd level: --zstd-level, else ironstar's default
PULL_SIZES = ("fixture",)  # the sizes whose round also builds zstd images and times pulls
TIME = "/usr/bin/time"
ARCHES = {"amd64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}
MIB = 1 << 20

def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- inputs

HELLO_RS = 'fn main() { println!("hello from the ironstar benchmark payload"); }\n'


def hello_binaries():
    """A tiny static musl program per arch (rustc + rust-lld, no cargo needed)."""
    d = os.path.join(WORK, "payload")
    os.makedirs(d, exist_ok=True)
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "payload", "hello.rs")
    out = {}
    for arch, triple in ARCHES.items():
        exe = os.path.join(d, f"hello-{arch}")
        if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
            subprocess.run(
                ["rustc", "-O", "--target", triple, "-C", "linker=rust-lld",
                 "-C", "target-feature=+crt-static", "-C", "strip=symbols",
                 "-o", exe, src],
                check=True)
        out[arch] = exe
    return out


def fixture_binaries():
    """The large real binary (issue 15): bench/fixture, a CLI with a few real dependencies,
    built statically per arch with full debug info (~30 MB; cargo + rust-lld, cached under
    target/bench/fixture, so only the first run compiles)."""
    tdir = os.path.join(WORK, "fixture")
    env = dict(os.environ)
    cmd = ["cargo", "build", "--release", "--quiet", "--locked", "--target-dir", tdir,
           "--manifest-path", os.path.join(FIXTURE, "Cargo.toml")]
    for triple in ARCHES.values():
        env[f"CARGO_TARGET_{triple.upper().replace('-', '_')}_LINKER"] = "rust-lld"
        cmd += ["--target", triple]
    log("  building bench/fixture for both arches (debug info, static musl)")
    subprocess.run(cmd, env=env, check=True)
    return {arch: os.path.join(tdir, triple, "release", "bench-fixture")
            for arch, triple in ARCHES.items()}


# Pseudo-random bytes over a 16-symbol alphabet: deflate gets them to ~57 %,
# with real Huffman and match-finding work on every byte (no long runs to skip over).
TABLE = bytes(0x40 | (b & 0x0F) for b in range(256))


def make_input(size_mb, arch, hello):
    """hello binary + (size_mb MiB - its size) of seeded data: a valid static ELF with
    trailing bytes, deterministic for (size, arch)."""
    d = os.path.join(WORK, "inputs")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"app-{size_mb}mb-{arch}")
    total = size_mb * MIB
    if os.path.exists(path) and os.path.getsize(path) == total:
        return path
    log(f"  generating {path}")
    rng = random.Random(f"ironstar-bench-{size_mb}-{arch}")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        head = open(hello, "rb").read()
        f.write(head)
        left = total - len(head)
        while left > 0:
            n = min(left, 16 * MIB)
            f.write(rng.randbytes(n).translate(TABLE))
            left -= n
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- measuring


def timed(cmd, env=None, stdin=None, cpu=None):
    """Run cmd under GNU time -v; return (wall seconds, peak RSS KiB, stdout). With a dict as
    `cpu`, its "cpu" key gets the user + system seconds."""
    fd, tf = tempfile.mkstemp(prefix="time-", dir=WORK)
    os.close(fd)
    t0 = time.perf_counter()
    p = subprocess.run([TIME, "-v", "-o", tf] + cmd, env=env, stdin=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n"
                         f"{p.stdout.decode(errors='replace')}\n{p.stderr.decode(errors='replace')}")
    rss, secs = 0, 0.0
    with open(tf) as f:
        for line in f:
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", line)
            if m:
                rss = int(m.group(1))
            m = re.search(r"(User|System) time \(seconds\): ([\d.]+)", line)
            if m:
                secs += float(m.group(2))
    if cpu is not None:
        cpu["cpu"] = secs
    os.unlink(tf)
    return wall, rss, p.stdout.decode()


def registry(name, delay):
    """A fresh registry under target/bench/registry/NAME (its config and log kept after stop)."""
    return Registry(os.path.join(WORK, "registry", name), delay)


# ---------------------------------------------------------------- the tools


def ironstar_build(bins, out, cache=None, zstd=False):
    """Cold (`--no-cache`: every layer compressed) or warm (`--cache-dir` already holding the
    layers: the binaries are hashed, nothing is compressed); gzip at LEVEL, or zstd."""
    rmtree(out)
    cmd = [IRONSTAR, "build", "-o", out, "--tag", "latest"]
    if zstd:
        cmd += ["--compression", "zstd"]
        cmd += ["--compression-level", str(ZSTD_LEVEL)] if ZSTD_LEVEL else []
    else:
        cmd += ["--compression-level", str(LEVEL)]
    cmd += ["--cache-dir", cache] if cache else ["--no-cache"]
    for arch, b in bins.items():
        cmd += ["--binary", f"linux/{arch}={b}"]
    r = {}
    r["wall"], r["rss_kib"], stdout = timed(cmd, cpu=r)
    r["digest"] = stdout.strip().split()[-1]
    return r


def buildah_build(bins, out, scratch, zstd=False):
    """The same image the buildah way, every step timed (storage setup excluded). zstd: buildah
    1.28's `manifest push` cannot choose a compression, so each arch's image is pushed with
    `buildah push --compression-format zstd` into the one OCI layout under its arch's name (no
    index)."""
    rmtree(out)
    root = os.path.join(scratch, "root")
    runroot = os.path.join(scratch, "runroot")
    rmtree(root)
    rmtree(runroot)
    env = dict(os.environ, BUILDAH_ISOLATION="chroot", STORAGE_DRIVER="vfs")
    base = ["buildah", "--storage-driver", "vfs", "--root", root, "--runroot", runroot]
    wall = 0.0
    rss = 0

    def step(*args):
        nonlocal wall, rss
        w, r, so = timed(base + list(args), env=env)
        wall += w
        rss = max(rss, r)
        return so.strip()

    images = []
    for arch, b in bins.items():
        c = step("from", "--arch", arch, "--os", "linux", "scratch")
        step("copy", c, b, "/app")
        step("config", "--arch", arch, "--os", "linux", "--entrypoint", '["/app"]', c)
        img = f"localhost/bench-{arch}"
        step("commit", "--format", "oci", c, img)
        images.append(img)
    if zstd:
        for arch, img in zip(bins, images):
            step("push", "--compression-format", "zstd", "--format", "oci", img,
                 f"oci:{out}:{arch}")
        return {"wall": wall, "rss_kib": rss}
    step("manifest", "create", "localhost/bench-list")
    for img in images:
        step("manifest", "add", "localhost/bench-list", img)
    step("manifest", "push", "--all", "--format", "oci", "localhost/bench-list",
         f"oci:{out}:latest")
    return {"wall": wall, "rss_kib": rss}


def floor(bins):
    """Deflate alone (zlib-rs through flate2, level LEVEL, one stream a file, one file a
    thread: one platform a core, both at once), nothing else: bench/floor.rs."""
    r = {}
    r["wall"], r["rss_kib"], out = timed([FLOOR, "--level", str(LEVEL)] + list(bins.values()),
                                         cpu=r)
    r["gz_bytes"] = sum(int(line.split()[0]) for line in out.splitlines())
    return r


def pushed(reg, mark, rc0, wall, rss):
    """A push's figures: time, RSS, blob uploads (registry log), bytes the registry read, and
    what went through the delay proxy: requests and round trips waited one after another."""
    reqs = reg.proxy.requests_since(mark[1])
    return {"wall": wall, "rss_kib": rss, "uploads": reg.uploads_since(mark[0]),
            "registry_read_bytes": reg.rchar() - rc0, "requests": len(reqs),
            "round_trips": round_trips([(q[0], q[1]) for q in reqs], reg.proxy.delay / 2),
            "log": [f"{(q[0] - reqs[0][0]) * 1000:7.1f} {(q[1] - reqs[0][0]) * 1000:7.1f} ms "
                    f"{q[2]} {q[3]} {q[4]}" for q in reqs]}


def ironstar_push(layout, reg):
    mark, rc0 = (reg.log_mark(), reg.proxy.mark()), reg.rchar()
    wall, rss, stdout = timed([IRONSTAR, "push", "--layout", layout, "--repository",
                               f"{reg.host}/bench", "--tag", "latest", "--plain-http"])
    return dict(pushed(reg, mark, rc0, wall, rss), out=stdout.strip())


def skopeo_push(layout, reg):
    mark, rc0 = (reg.log_mark(), reg.proxy.mark()), reg.rchar()
    wall, rss, _ = timed(["skopeo", "copy", "--all", "--preserve-digests", "--quiet",
                          "--dest-tls-verify=false", f"oci:{layout}:latest",
                          f"docker://{reg.host}/bench:latest"])
    return pushed(reg, mark, rc0, wall, rss)


def layer_bytes(layout):
    """Sum of the layer sizes an OCI layout's images list (each layer counted once)."""
    def blob(d):
        with open(os.path.join(layout, "blobs", *d.split(":"))) as f:
            return json.load(f)
    layers, todo = {}, list(blob_index(layout)["manifests"])
    while todo:
        d = todo.pop()
        if "index" in d["mediaType"] or "list" in d["mediaType"]:
            todo += blob(d["digest"])["manifests"]
        else:
            for layer in blob(d["digest"])["layers"]:
                layers[layer["digest"]] = layer["size"]
    return sum(layers.values())


def blob_index(layout):
    with open(os.path.join(layout, "index.json")) as f:
        return json.load(f)


def push_pair(tool, layout, name, delay):
    """First push to a fresh registry, then the no-op re-push to the same one."""
    reg = registry(name, delay)
    try:
        f = tool(layout, reg)
        r = tool(layout, reg)
    finally:
        reg.stop()
    return f, r


def pull_round(i, delay, layouts):
    """The puller's side of one round: the four images pushed (untimed) to one registry behind
    the delay proxy, then every (puller, image) pull timed from fresh state."""
    reg = registry(f"pull-{i}", delay)
    try:
        def run(cmd):
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        refs = pull.publish(reg, layouts, run)
        r = pull.pull_all(refs, reg, WORK, timed, STARTED, i)
    finally:
        reg.stop()
    log("    pull " + " ".join(
        f"{k} {v['wall']:.3f}s" + (f" (unpack {v['unpack']:.3f}s)" if v.get("unpack") else "")
        for k, v in sorted(r.items())))
    return r


# ---------------------------------------------------------------- rounds


def med(rounds, *path):
    vals = []
    for r in rounds:
        v = r
        for k in path:
            v = v[k]
        vals.append(v)
    return statistics.median(vals)


def ratio_med(rounds, a, b):
    """Median over rounds of the per-round ratio a/b (same-round pairs)."""
    return statistics.median(x[a[0]][a[1]] / x[b[0]][b[1]] for x in rounds)


def bench_size(size_mb, nrounds, bins, scratch, delay):
    """One input size (MiB, or "fixture" for the real binary) for nrounds rounds."""
    load_start = os.getloadavg()
    for b in bins.values():  # warm the page cache for everyone alike
        subprocess.run(["cat", b], stdout=subprocess.DEVNULL, check=True)
    lay_i = os.path.join(WORK, "layouts", f"{size_mb}-ironstar")
    lay_b = os.path.join(WORK, "layouts", f"{size_mb}-buildah")
    lay_iz = os.path.join(WORK, "layouts", f"{size_mb}-ironstar-zstd")
    lay_bz = os.path.join(WORK, "layouts", f"{size_mb}-buildah-zstd")
    pulls = str(size_mb) in PULL_SIZES
    cache = os.path.join(WORK, "cache", str(size_mb))
    rmtree(cache)
    ironstar_build(bins, lay_i, cache)  # fills the cache the warm builds read
    rounds = []
    for i in range(nrounds):
        log(f"  {size_mb} MB round {i + 1}/{nrounds}")
        r = {}
        build_steps = [("ironstar", lambda: ironstar_build(bins, lay_i)),
                       ("ironstar_warm", lambda: ironstar_build(bins, lay_i, cache)),
                       ("buildah", lambda: buildah_build(bins, lay_b, scratch)),
                       ("floor", lambda: floor(bins))]
        if pulls:
            build_steps += [("ironstar_zstd", lambda: ironstar_build(bins, lay_iz, zstd=True)),
                            ("buildah_zstd", lambda: buildah_build(bins, lay_bz, scratch, True))]
        k = i % len(build_steps)
        for name, fn in build_steps[k:] + build_steps[:k]:
            r[name] = fn()
        pushers = [("ironstar", ironstar_push), ("skopeo", skopeo_push)]
        if i % 2:
            pushers.reverse()
        for name, fn in pushers:
            first, again = push_pair(fn, lay_i, f"{size_mb}-{name}-{i}", delay)
            r[f"{name}_push"] = first
            r[f"{name}_repush"] = again
        if pulls:
            lay_t = pull.tar_layout(lay_iz, os.path.join(WORK, "layouts", f"{size_mb}-tar"))
            r["pull"] = pull_round(i, delay, {"ironstar_gzip": lay_i, "ironstar_zstd": lay_iz,
                                              "buildah_gzip": lay_b, "buildah_zstd": lay_bz,
                                              "tar": lay_t})
        log("    build ironstar %.2fs (cpu %.2fs, warm %.3fs) buildah %.2fs floor %.2fs (cpu %.2fs)"
            " | push ironstar %.2fs (%d req, %d rt) skopeo %.2fs (%d req, %d rt) | re-push "
            "ironstar %.3fs (%d req) skopeo %.3fs (%d req)" % (
                r["ironstar"]["wall"], r["ironstar"]["cpu"], r["ironstar_warm"]["wall"],
                r["buildah"]["wall"], r["floor"]["wall"], r["floor"]["cpu"],
                r["ironstar_push"]["wall"], r["ironstar_push"]["requests"],
                r["ironstar_push"]["round_trips"], r["skopeo_push"]["wall"],
                r["skopeo_push"]["requests"], r["skopeo_push"]["round_trips"],
                r["ironstar_repush"]["wall"], r["ironstar_repush"]["requests"],
                r["skopeo_repush"]["wall"], r["skopeo_repush"]["requests"]))
        rounds.append(r)
    rmtree(os.path.join(scratch, "root"))
    rmtree(os.path.join(scratch, "runroot"))

    digests = sorted({r[k]["digest"] for r in rounds for k in ("ironstar", "ironstar_warm")})
    layout_bytes = sum(
        os.path.getsize(os.path.join(dp, f))
        for dp, _, fs in os.walk(os.path.join(lay_i, "blobs")) for f in fs)
    s = {
        "size_mb": size_mb,
        "rounds": nrounds,
        "deflate_level": LEVEL,
        "delay_ms_per_request": delay * 1000,
        "loadavg_start_end": [load_start, os.getloadavg()],
        "input_bytes_per_platform": {a: os.path.getsize(b) for a, b in bins.items()},
        "layout_blob_bytes": layout_bytes,
        "layer_bytes": {"ironstar": layer_bytes(lay_i), "buildah": layer_bytes(lay_b),
                        "floor_gzip": rounds[-1]["floor"]["gz_bytes"]},
        "ironstar_digests": digests,
        "median_seconds": {
            "ironstar_build": med(rounds, "ironstar", "wall"),
            "ironstar_warm_build": med(rounds, "ironstar_warm", "wall"),
            "buildah_build": med(rounds, "buildah", "wall"),
            "floor": med(rounds, "floor", "wall"),
            "ironstar_push": med(rounds, "ironstar_push", "wall"),
            "skopeo_push": med(rounds, "skopeo_push", "wall"),
            "ironstar_repush": med(rounds, "ironstar_repush", "wall"),
            "skopeo_repush": med(rounds, "skopeo_repush", "wall"),
        },
        "median_cpu_seconds": {
            "ironstar_build": med(rounds, "ironstar", "cpu"),
            "floor": med(rounds, "floor", "cpu"),
        },
        "push_requests": {k: med(rounds, k, "requests") for k in PUSHES},
        "push_round_trips": {k: med(rounds, k, "round_trips") for k in PUSHES},
        "ratios": {
            "build_vs_floor": ratio_med(rounds, ("ironstar", "wall"), ("floor", "wall")),
            "build_cpu_vs_floor_cpu": ratio_med(rounds, ("ironstar", "cpu"), ("floor", "cpu")),
            "build_vs_buildah": ratio_med(rounds, ("ironstar", "wall"), ("buildah", "wall")),
            "push_vs_skopeo": ratio_med(rounds, ("ironstar_push", "wall"),
                                        ("skopeo_push", "wall")),
            "buildah_vs_build": ratio_med(rounds, ("buildah", "wall"), ("ironstar", "wall")),
            "buildah_vs_warm_build": ratio_med(rounds, ("buildah", "wall"),
                                               ("ironstar_warm", "wall")),
            "skopeo_push_vs_push": ratio_med(rounds, ("skopeo_push", "wall"),
                                             ("ironstar_push", "wall")),
            "repush_vs_push": ratio_med(rounds, ("ironstar_repush", "wall"),
                                        ("ironstar_push", "wall")),
            "skopeo_repush_vs_repush": ratio_med(rounds, ("skopeo_repush", "wall"),
                                                 ("ironstar_repush", "wall")),
        },
        "peak_rss_mib": {
            "ironstar_build": max(r["ironstar"]["rss_kib"] for r in rounds) / 1024,
            "ironstar_warm_build": max(r["ironstar_warm"]["rss_kib"] for r in rounds) / 1024,
            "ironstar_push": max(r["ironstar_push"]["rss_kib"] for r in rounds) / 1024,
            "ironstar_repush": max(r["ironstar_repush"]["rss_kib"] for r in rounds) / 1024,
            "buildah_step_max": max(r["buildah"]["rss_kib"] for r in rounds) / 1024,
            "skopeo_push": max(r["skopeo_push"]["rss_kib"] for r in rounds) / 1024,
        },
        "repush_blob_uploads": {
            "ironstar": max(r["ironstar_repush"]["uploads"] for r in rounds),
            "skopeo": max(r["skopeo_repush"]["uploads"] for r in rounds),
        },
        "repush_registry_read_bytes_max": {
            "ironstar": max(r["ironstar_repush"]["registry_read_bytes"] for r in rounds),
            "skopeo": max(r["skopeo_repush"]["registry_read_bytes"] for r in rounds),
        },
        "first_push_registry_read_bytes_median": {
            "ironstar": med(rounds, "ironstar_push", "registry_read_bytes"),
            "skopeo": med(rounds, "skopeo_push", "registry_read_bytes"),
        },
        "raw": rounds,
    }
    if pulls:
        s["layer_bytes"]["ironstar_zstd"] = layer_bytes(lay_iz)
        s["layer_bytes"]["buildah_zstd"] = layer_bytes(lay_bz)
        s["layer_bytes"]["tar_amd64"] = layer_bytes(os.path.join(WORK, "layouts",
                                                                 f"{size_mb}-tar"))
        s["median_seconds"]["ironstar_zstd_build"] = med(rounds, "ironstar_zstd", "wall")
        s["median_seconds"]["buildah_zstd_build"] = med(rounds, "buildah_zstd", "wall")
        s["median_cpu_seconds"]["ironstar_zstd_build"] = med(rounds, "ironstar_zstd", "cpu")
        s["ratios"]["zstd_build_vs_gzip"] = ratio_med(rounds, ("ironstar_zstd", "wall"),
                                                      ("ironstar", "wall"))
        s["ratios"]["zstd_build_vs_buildah_zstd"] = ratio_med(
            rounds, ("ironstar_zstd", "wall"), ("buildah_zstd", "wall"))
        s["ironstar_zstd_digests"] = sorted({r["ironstar_zstd"]["digest"] for r in rounds})
        s["pull"] = pull.summary(rounds, med, ratio_med)
    return s


PUSHES = ("ironstar_push", "skopeo_push", "ironstar_repush", "skopeo_repush")


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except Exception:
            return "?"
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "mem_mib": mem, "kernel": platform.release(),
        "ironstar": ver([IRONSTAR, "--version"]), "skopeo": ver(["skopeo", "--version"]),
        "buildah": ver(["buildah", "--version"]), "gzip": ver(["gzip", "--version"]),
        "registry": ver(["docker-registry", "--version"]),
        "containerd": ver(["containerd", "--version"]), "podman": ver(["podman", "--version"]),
    }


def table(results):
    lines = []
    h = ("| input ×2 | rounds | build (cold) | floor | **build / floor** | CPU build / floor "
         "| buildah | **build / buildah** | layers ironstar / buildah | warm build "
         "| push | skopeo push | **push / skopeo** | push requests / round trips "
         "| skopeo requests / round trips | re-push | re-push requests | RSS build / push |")
    lines.append(h)
    lines.append("|" + "---|" * (h.count("|") - 1))
    for s in results:
        m, q, rss, c = s["median_seconds"], s["ratios"], s["peak_rss_mib"], s["median_cpu_seconds"]
        req, rt, lb = s["push_requests"], s["push_round_trips"], s["layer_bytes"]
        name = "fixture" if s["size_mb"] == "fixture" else f"{s['size_mb']} MiB"
        ins = "/".join(f"{n / 1e6:.1f}" for n in s["input_bytes_per_platform"].values())
        lines.append(
            f"| {name} ({ins} MB) | {s['rounds']} | {m['ironstar_build']:.2f} s "
            f"(CPU {c['ironstar_build']:.2f} s) | {m['floor']:.2f} s (CPU {c['floor']:.2f} s) "
            f"| **{q['build_vs_floor']:.2f}×** | {q['build_cpu_vs_floor_cpu']:.2f}× "
            f"| {m['buildah_build']:.2f} s | **{q['build_vs_buildah']:.3f}×** "
            f"| {lb['ironstar'] / 1e6:.1f} / {lb['buildah'] / 1e6:.1f} MB "
            f"| {m['ironstar_warm_build']:.3f} s | {m['ironstar_push']:.2f} s "
            f"| {m['skopeo_push']:.2f} s | **{q['push_vs_skopeo']:.2f}×** "
            f"| {req['ironstar_push']:g} / **{rt['ironstar_push']:g}** "
            f"| {req['skopeo_push']:g} / {rt['skopeo_push']:g} "
            f"| {m['ironstar_repush']:.3f} s | **{req['ironstar_repush']:g}** "
            f"| {rss['ironstar_build']:.1f} / "
            f"{max(rss['ironstar_push'], rss['ironstar_repush']):.1f} MiB |")
    return "\n".join(lines)


def default_level():
    """ironstar's default deflate level, as `ironstar build --help` states it."""
    out = subprocess.run([IRONSTAR, "build", "--help"], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"--compression-level[^\[]*?gzip \d+ to \d+\s+\[default: (\d+)\]", out)
    if not m:
        raise SystemExit("bench: no default --compression-level in `ironstar build --help`")
    return int(m.group(1))


def main():
    global LEVEL, ZSTD_LEVEL, PULL_SIZES
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="fixture,5,50,500",
                    help="MiB per platform of synthetic input, or `fixture` for the real ~30 MB "
                         "binaries of bench/fixture (default fixture,5,50,500)")
    ap.add_argument("--delay-ms", type=float, default=20,
                    help="delay the proxy adds to every registry request (default 20)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--level", type=int, default=None,
                    help="deflate level of ironstar and of the floor (default: ironstar's)")
    ap.add_argument("--zstd-level", type=int, default=None,
                    help="ironstar's zstd level (default: ironstar's)")
    ap.add_argument("--pull-sizes", default="fixture",
                    help="sizes whose rounds also build zstd images and time containerd and "
                         "podman pulls (default fixture; empty for none)")
    ap.add_argument("--rounds-500", type=int, default=3,
                    help="rounds for sizes >= 500 MB (default 3)")
    a = ap.parse_args()
    LEVEL = a.level if a.level is not None else default_level()
    ZSTD_LEVEL = a.zstd_level
    PULL_SIZES = tuple(x for x in a.pull_sizes.split(",") if x)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(WORK, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="buildah-", dir=WORK)
    results = []
    try:
        hello = hello_binaries()
        for size in a.sizes.split(","):
            if size == "fixture":
                bins, n = fixture_binaries(), a.rounds
            else:
                size = int(size)
                bins = {arch: make_input(size, arch, hello[arch]) for arch in ARCHES}
                n = a.rounds_500 if size >= 500 else a.rounds
            log(f"== {size} per platform, {n} rounds")
            results.append(bench_size(size, n, bins, scratch, a.delay_ms / 1000))
    finally:
        stop_all()
        # vfs layers can hold read-only dirs; buildah cleans its own storage best
        shutil.rmtree(scratch, ignore_errors=True)
    out = {"machine": machine(), "results": results}
    path = os.path.join(WORK, "results.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(table(results))
    if any("pull" in r for r in results):
        print("\nThe puller's side (host platform, fresh state each pull):\n")
        print(pull.table(results))
    print(f"\nJSON: {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
