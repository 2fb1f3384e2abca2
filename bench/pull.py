"""The puller's side of the benchmark (issue 21): the time for containerd (`ctr images pull`,
native snapshotter, a private containerd started for each pull) and podman (`podman pull`,
private vfs storage made for each pull) to pull and unpack an image from the loopback registry
through the delay proxy, for ironstar's gzip and zstd images and buildah's gzip and zstd
images of the same binaries, side by side in one round. Only the host's platform is pulled.
A fifth image, `tar`, is the zstd one with its layer uncompressed (the same index, config and
tar): the floor of an unpack, what a puller spends besides decompressing.

Used by bench.py: `publish(...)` pushes the four images (untimed) to one registry, then
`pull_all(...)` times every (puller, image) pair, in an order that changes from round to round.
"""

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

IMAGES = ("ironstar_gzip", "ironstar_zstd", "buildah_gzip", "buildah_zstd", "tar")
PULLERS = ("containerd", "podman")
HOST_ARCH = "amd64"


def _ms(text):
    """ctr's `done: 123.4ms` / `1.2s` as seconds."""
    m = re.search(r"done: ([\d.]+)(ms|s|µs)", text)
    if not m:
        return None
    v = float(m.group(1))
    return {"ms": v / 1000, "s": v, "µs": v / 1e6}[m.group(2)]


class Containerd:
    """A private containerd: root, state, sockets and config under `dir` (no CRI plugin); its
    default snapshotter is irrelevant, every ctr call says `--snapshotter native`."""

    def __init__(self, dir, started):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.sock = os.path.join(dir, "containerd.sock")
        cfg = os.path.join(dir, "config.toml")
        with open(cfg, "w") as f:
            f.write(f"""version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = "{dir}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
""")
        self.logf = open(os.path.join(dir, "containerd.log"), "wb")
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.started = started
        started.append(self.proc)
        deadline = time.time() + 20
        while subprocess.run(self.ctr("version"), capture_output=True).returncode != 0:
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"containerd did not start, see {dir}/containerd.log")
            time.sleep(0.05)

    def ctr(self, *args):
        return ["ctr", "--address", self.sock, "--namespace", "bench"] + list(args)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        if self.proc in self.started:
            self.started.remove(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def tar_layout(zstd_layout, out):
    """The host platform of `zstd_layout` with its layer stored as the plain tar (media type
    `…layer.v1.tar`), taken from the docker-archive `ironstar load` writes (which holds a zstd
    layer as its tar): an index of one manifest, so it takes the same requests as the others."""
    import hashlib
    import json
    import tarfile
    shutil.rmtree(out, ignore_errors=True)
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    archive = out + ".docker.tar"
    subprocess.run(["target/release/ironstar", "load", "--layout", zstd_layout, "--platform",
                    f"linux/{HOST_ARCH}", "--output", archive], check=True,
                   stdout=subprocess.DEVNULL)

    def put(b):
        d = hashlib.sha256(b).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(b)
        return {"digest": f"sha256:{d}", "size": len(b)}

    with tarfile.open(archive) as t:
        m = json.load(t.extractfile("manifest.json"))[0]
        config = t.extractfile(m["Config"]).read()
        layer = t.extractfile(m["Layers"][0]).read()
    os.unlink(archive)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **put(layer)}]}
    man = put(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
                            "platform": {"architecture": HOST_ARCH, "os": "linux"}}]}
    idx = put(json.dumps(index).encode())
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", **idx,
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return out


def publish(reg, layouts, run):
    """Push the four images to `reg` (through its proxy; untimed): ironstar's layouts with
    ironstar, buildah's with skopeo (digests preserved). Returns image -> reference."""
    refs = {}
    for name in IMAGES:
        ref = f"{reg.host}/{name.replace('_', '-')}:latest"
        layout = layouts[name]
        if name.startswith("ironstar") or name == "tar":
            run(["target/release/ironstar", "push", "-q", "--layout", layout, "--repository",
                 ref.rsplit(":", 1)[0], "--tag", "latest", "--plain-http"])
        else:
            # buildah's gzip layout is a multi-arch index under `latest`; its zstd one holds one
            # image per arch (buildah's manifest push cannot choose zstd).
            src = f"oci:{layout}:latest" if name == "buildah_gzip" else f"oci:{layout}:{HOST_ARCH}"
            run(["skopeo", "copy", "--all", "--preserve-digests", "--quiet",
                 "--dest-tls-verify=false", src, f"docker://{ref}"])
        refs[name] = ref
    return refs


def pull_containerd(ref, reg, work, timed, started):
    """One fresh containerd pulling `ref` (host platform): wall time, ctr's own unpack time,
    requests and round trips through the proxy."""
    c = Containerd(tempfile.mkdtemp(prefix="containerd-", dir=work), started)
    try:
        mark = reg.proxy.mark()
        wall, rss, out = timed(c.ctr("images", "pull", "--plain-http", "--snapshotter", "native",
                                     "--platform", f"linux/{HOST_ARCH}", ref))
        reqs = reg.proxy.requests_since(mark)
    finally:
        c.stop()
    return {"wall": wall, "unpack": _ms(out), "requests": len(reqs),
            "round_trips": _round_trips(reqs, reg)}


def pull_podman(ref, reg, work, timed):
    """podman pulling `ref` into fresh private vfs storage: wall time, requests, round trips."""
    d = tempfile.mkdtemp(prefix="podman-", dir=work)
    with open(os.path.join(d, "containers.conf"), "w") as f:
        f.write('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
    with open(os.path.join(d, "storage.conf"), "w") as f:
        f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{d}/storage"\nrunroot = "{d}/run"\n')
    env = dict(os.environ, CONTAINERS_CONF=f"{d}/containers.conf",
               CONTAINERS_STORAGE_CONF=f"{d}/storage.conf")
    try:
        mark = reg.proxy.mark()
        wall, rss, _ = timed(["podman", "pull", "--tls-verify=false", "--quiet", "--arch",
                              HOST_ARCH, ref], env=env)
        reqs = reg.proxy.requests_since(mark)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"wall": wall, "requests": len(reqs), "round_trips": _round_trips(reqs, reg)}


def _round_trips(reqs, reg):
    from delay_proxy import round_trips
    return round_trips([(q[0], q[1]) for q in reqs], reg.proxy.delay / 2)


def pull_all(refs, reg, work, timed, started, round_no):
    """Every (puller, image) pair once, the order rotating with the round."""
    pairs = [(p, i) for p in PULLERS for i in IMAGES]
    k = round_no % len(pairs)
    out = {}
    for puller, image in pairs[k:] + pairs[:k]:
        if puller == "containerd":
            r = pull_containerd(refs[image], reg, work, timed, started)
        else:
            r = pull_podman(refs[image], reg, work, timed)
        out[f"{puller}_{image}"] = r
    return out


def summary(rounds, med, ratio_med):
    """Medians of the pull figures and the same-round ratios the issue's targets are about."""
    keys = [f"{p}_{i}" for p in PULLERS for i in IMAGES]
    pulls = [r["pull"] for r in rounds]
    s = {"median_seconds": {k: med(pulls, k, "wall") for k in keys},
         "median_unpack_seconds": {f"containerd_{i}": med(pulls, f"containerd_{i}", "unpack")
                                   for i in IMAGES},
         "requests": {k: med(pulls, k, "requests") for k in keys},
         "round_trips": {k: med(pulls, k, "round_trips") for k in keys},
         "ratios": {}}
    for p in PULLERS:
        s["ratios"][f"{p}_zstd_vs_gzip"] = ratio_med(
            pulls, (f"{p}_ironstar_zstd", "wall"), (f"{p}_ironstar_gzip", "wall"))
        s["ratios"][f"{p}_buildah_zstd_vs_gzip"] = ratio_med(
            pulls, (f"{p}_buildah_zstd", "wall"), (f"{p}_buildah_gzip", "wall"))
    s["ratios"]["containerd_unpack_zstd_vs_gzip"] = ratio_med(
        pulls, ("containerd_ironstar_zstd", "unpack"), ("containerd_ironstar_gzip", "unpack"))
    s["ratios"]["containerd_unpack_zstd_vs_tar"] = ratio_med(
        pulls, ("containerd_ironstar_zstd", "unpack"), ("containerd_tar", "unpack"))
    s["ratios"]["containerd_bound_vs_gzip"] = statistics.median(_bound(p) for p in pulls)
    return s


def _bound(p):
    """The best a layer of zstd's size could do in this round: the zstd pull's fetch side (its
    bytes and round trips) followed by the unpack of the uncompressed tar (no decompression at
    all), over the gzip pull. Only a smaller layer could get below it."""
    z, t, g = p["containerd_ironstar_zstd"], p["containerd_tar"], p["containerd_ironstar_gzip"]
    return (z["wall"] - z["unpack"] + t["unpack"]) / g["wall"]


def table(results):
    """The puller's side: one row per image, for each size that has pull figures."""
    lines = []
    h = ("| input ×2 | image | cold build | layers (both) | containerd pull+unpack "
         "| of which unpack | podman pull | requests / round trips (containerd) |")
    lines.append(h)
    lines.append("|" + "---|" * (h.count("|") - 1))
    for s in results:
        if "pull" not in s:
            continue
        p, b, lb = s["pull"], s["median_seconds"], s["layer_bytes"]
        name = "fixture" if s["size_mb"] == "fixture" else f"{s['size_mb']} MiB"
        builds = {"ironstar_gzip": b["ironstar_build"], "ironstar_zstd": b["ironstar_zstd_build"],
                  "buildah_gzip": b["buildah_build"], "buildah_zstd": b["buildah_zstd_build"]}
        sizes = {"ironstar_gzip": lb["ironstar"], "ironstar_zstd": lb["ironstar_zstd"],
                 "buildah_gzip": lb["buildah"], "buildah_zstd": lb["buildah_zstd"],
                 "tar": lb["tar_amd64"]}
        for i in IMAGES:
            c = f"containerd_{i}"
            build = "—" if i == "tar" else f"{builds[i]:.3f} s"
            label = "uncompressed tar (floor)" if i == "tar" else i.replace("_", " ")
            lines.append(
                f"| {name} | {label} | {build} "
                f"| {sizes[i] / 1e6:.2f} MB{' (amd64)' if i == 'tar' else ''} "
                f"| {p['median_seconds'][c]:.3f} s "
                f"| {p['median_unpack_seconds'][c]:.3f} s "
                f"| {p['median_seconds'][f'podman_{i}']:.3f} s "
                f"| {p['requests'][c]:g} / {p['round_trips'][c]:g} |")
        q = p["ratios"]
        lines.append(
            f"| {name} | **ratios** | zstd / gzip build **{s['ratios']['zstd_build_vs_gzip']:.2f}×** "
            f"| zstd / gzip-{s['deflate_level']} layers **{lb['ironstar_zstd'] / lb['ironstar']:.3f}×** "
            f"| zstd / gzip **{q['containerd_zstd_vs_gzip']:.2f}×** "
            f"| {q['containerd_unpack_zstd_vs_gzip']:.2f}× "
            f"| {q['podman_zstd_vs_gzip']:.2f}× (buildah's {q['podman_buildah_zstd_vs_gzip']:.2f}×) "
            f"| buildah's zstd / gzip: {q['containerd_buildah_zstd_vs_gzip']:.2f}× |")
        lines.append(
            f"| {name} | **bound** | | | zstd's fetch + the tar's unpack / gzip: "
            f"**{q['containerd_bound_vs_gzip']:.2f}×** | | | |")
    return "\n".join(lines)
