#!/usr/bin/env python3
"""Issue 30's benchmark: merging two per-platform images already pushed by digest into one
multi-platform index in the same repository, through the proxy adding 20 ms to every request:
`ironstar merge REF_AMD64 REF_ARM64 --repository R --tag T` against buildah's manifest path
(`buildah manifest create` + `manifest add --all` of each part + `manifest push --all`), the job
`docker buildx imagetools create` does.

Each round pushes the two parts (`ironstar push --by-digest`, not timed) to a fresh repository,
then runs both sides (alternating which goes first), counting through the proxy every request,
the round trips waited one after another, and the requests that move blob bytes (a `GET` of a
blob, a `PUT`/`PATCH` of an upload). Medians are reported.

    bash bench/run.sh --merge [--rounds N] [--delay-ms 20]

Output: a table on stdout and target/bench/merge.json.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import urllib.request

import bench as b

IRONSTAR = os.environ.get("IRONSTAR_BIN", b.IRONSTAR)


def layouts():
    """One single-platform layout per arch, from the benchmark's tiny payload program."""
    bins = b.hello_binaries()
    out = {}
    for arch, exe in bins.items():
        # One name for both parts (a build names the image after its binary): one definition.
        named = os.path.join(b.WORK, "merge", f"bin-{arch}", "hello")
        os.makedirs(os.path.dirname(named), exist_ok=True)
        shutil.copy(exe, named)
        d = os.path.join(b.WORK, "merge", f"layout-{arch}")
        b.rmtree(d)
        subprocess.run([IRONSTAR, "build", "-q", "--no-cache", "-o", d, "--tag", "latest",
                        "--binary", f"linux/{arch}={named}"], check=True, stdout=subprocess.DEVNULL)
        out[arch] = d
    return out, {arch: os.path.join(b.WORK, "merge", f"bin-{arch}", "hello") for arch in bins}


def single_build(parts_bins):
    """The digest one build of both binaries writes: what the merge must equal."""
    d = os.path.join(b.WORK, "merge", "layout-both")
    b.rmtree(d)
    cmd = [IRONSTAR, "build", "--no-cache", "-o", d, "--tag", "latest"]
    for arch in ("amd64", "arm64"):
        cmd += ["--binary", f"linux/{arch}={parts_bins[arch]}"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def index_digest(reg, repo_path, tag):
    """The digest of a tag's index, asked of the registry directly (not through the proxy)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{reg.port}/v2/{repo_path}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                           "application/vnd.docker.distribution.manifest.list.v2+json"})
    with urllib.request.urlopen(req) as r:
        return "sha256:" + hashlib.sha256(r.read()).hexdigest()


def blob_moves(reqs):
    return sum(1 for q in reqs
               if (q[2] == "GET" and re.search(r"/blobs/sha256:", q[3]))
               or (q[2] in ("PUT", "PATCH") and "/blobs/uploads/" in q[3]))


def measured(reg, cmds, env=None):
    """Run `cmds` one after another: wall time, requests, round trips, blob-moving requests."""
    mark = reg.proxy.mark()
    wall, out = 0.0, ""
    for c in cmds:
        w, _, o = b.timed(c, env=env)
        wall, out = wall + w, o
    reqs = reg.proxy.requests_since(mark)
    trips = b.round_trips([(q[0], q[1]) for q in reqs], reg.proxy.delay / 2)
    return {"wall": wall, "requests": len(reqs), "round_trips": trips,
            "blob_requests": blob_moves(reqs), "out": out.strip(),
            "log": [f"{q[2]} {q[3]} {q[4]}" for q in reqs]}


def ironstar_merge(reg, repo, refs):
    return measured(reg, [[IRONSTAR, "merge", "-q", "--plain-http", *refs,
                           "--repository", repo, "--tag", "ironstar"]])


def ironstar_signed(reg, repo, refs, key):
    """The full job of a release: two tags, the merged index signed (its tags last)."""
    return measured(reg, [[IRONSTAR, "merge", "-q", "--plain-http", *refs, "--repository", repo,
                           "--tag", "signed", "--tag", "signed-2", "--sign-key", key]])


def signing_key():
    """A P-256 PKCS#8 key (what `--sign-key` takes besides cosign's own files)."""
    path = os.path.join(b.WORK, "merge", "key.pem")
    pem = subprocess.run("openssl ecparam -name prime256v1 -genkey -noout | "
                         "openssl pkcs8 -topk8 -nocrypt", shell=True, check=True,
                         capture_output=True).stdout
    with open(path, "wb") as f:
        f.write(pem)
    return path


def buildah_merge(reg, repo, refs, conf):
    env = dict(os.environ)
    env.update({"CONTAINERS_CONF": os.path.join(conf, "containers.conf"),
                "CONTAINERS_STORAGE_CONF": os.path.join(conf, "storage.conf")})
    name = f"localhost/merge-{os.path.basename(repo)}"
    cmds = [["buildah", "manifest", "create", name]]
    cmds += [["buildah", "manifest", "add", "--all", "--tls-verify=false", name,
              f"docker://{r}"] for r in refs]
    cmds += [["buildah", "manifest", "push", "--all", "--tls-verify=false", name,
              f"docker://{repo}:buildah"]]
    return measured(reg, cmds, env=env)


def containers_conf():
    d = tempfile.mkdtemp(prefix="merge-containers-", dir=b.WORK)
    with open(os.path.join(d, "containers.conf"), "w") as f:
        f.write('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
    with open(os.path.join(d, "storage.conf"), "w") as f:
        f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{d}/storage"\nrunroot = "{d}/run"\n')
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--delay-ms", type=float, default=20)
    a = ap.parse_args()
    os.makedirs(os.path.join(b.WORK, "merge"), exist_ok=True)
    parts, named = layouts()
    key = signing_key()
    want = single_build(named)
    conf = containers_conf()
    reg = b.registry("merge", a.delay_ms / 1000)
    rounds = []
    try:
        for i in range(a.rounds):
            repo = f"{reg.host}/merge/r{i}"
            refs = [subprocess.run([IRONSTAR, "push", "-q", "--plain-http", "--by-digest",
                                    "--layout", parts[arch], "--repository", repo],
                                   check=True, capture_output=True, text=True).stdout.strip()
                    for arch in ("amd64", "arm64")]
            sides = [("ironstar", lambda: ironstar_merge(reg, repo, refs)),
                     ("buildah", lambda: buildah_merge(reg, repo, refs, conf))]
            if i % 2:
                sides.reverse()
            r = {name: f() for name, f in sides}
            r["signed"] = ironstar_signed(reg, repo, refs, key)
            for side in ("ironstar", "buildah"):
                got = index_digest(reg, f"merge/r{i}", side)
                r[side]["equals_single_build"] = got == want
            b.log(f"round {i}: ironstar {r['ironstar']['wall']:.3f} s "
                  f"({r['ironstar']['requests']} requests, {r['ironstar']['round_trips']} round "
                  f"trips), buildah {r['buildah']['wall']:.3f} s "
                  f"({r['buildah']['requests']} requests, {r['buildah']['round_trips']} round "
                  "trips)")
            rounds.append(r)
    finally:
        reg.stop()
        b.stop_all()
        b.rmtree(conf)
    med = lambda side, k: statistics.median(r[side][k] for r in rounds)
    keys = ("wall", "requests", "round_trips", "blob_requests")
    summary = {side: {k: med(side, k) for k in keys}
               for side in ("ironstar", "buildah", "signed")}
    for side in ("ironstar", "buildah"):
        summary[side]["equals_single_build"] = all(r[side]["equals_single_build"]
                                                   for r in rounds)
    summary.update({"rounds": a.rounds, "delay_ms": a.delay_ms, "load": os.getloadavg()})
    path = os.path.join(b.WORK, "merge.json")
    with open(path, "w") as f:
        json.dump({"machine": b.machine(), "summary": summary, "rounds": rounds}, f, indent=2)
    i, sg, bl = summary["ironstar"], summary["signed"], summary["buildah"]
    print(f"| merge of 2 pushed platforms, {a.delay_ms:.0f} ms a request "
          "| ironstar merge, 1 tag | ironstar merge, 2 tags, --sign-key "
          "| buildah manifest create + add + push |")
    print("|---|---|---|---|")
    row = lambda what, k, fmt: print(f"| {what} | " + " | ".join(
        fmt.format(x[k]) for x in (i, sg, bl)) + " |")
    row(f"wall (median of {a.rounds})", "wall", "{:.3f} s")
    row("requests", "requests", "{:.0f}")
    row("round trips one after another", "round_trips", "{:.0f}")
    row("requests moving blob bytes", "blob_requests", "{:.0f}")
    yes = lambda side: "yes" if summary[side]["equals_single_build"] else "no"
    print(f"| index = `ironstar build` of both binaries | {yes('ironstar')} | {yes('ironstar')} "
          f"| {yes('buildah')} |")
    print(f"\nJSON: {os.path.relpath(path, b.ROOT)}")


if __name__ == "__main__":
    main()
