#!/usr/bin/env python3
"""Issue 36's benchmark: reuse of images already in the registry. The workspace fixture
(tests/fixtures/workspace: api, migrate, worker, two platforms each), copied into a git
repository of its own, published through the proxy adding 20 ms to every request:

- full: the first publish, a cold cargo build (a fresh target directory; the crates and zig's
  cache are on the machine, as a CI cache would have them);
- unchanged: a fresh clone published again on a "fresh runner" (fresh HOME, CARGO_HOME and
  target directory): no cargo build, only the tags move;
- one changed: a one-line change in api, published again (the full run's target directory):
  api alone is built, the others reused; beside it, api's own cargo build time.

Wall time, cargo time (the cargo-zigbuild runs, timed by a wrapper on PATH), requests and round
trips waited one after another (after the first request, as the issue counts them).

    bash bench/run.sh --reuse [--rounds N] [--delay-ms 20]

Output: a table on stdout and target/bench/reuse.json.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time

import bench as b

FIXTURE = os.path.join(b.ROOT, "tests", "fixtures", "workspace")
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost",
       "-c", "init.defaultBranch=main"]


def git(cwd, *args):
    subprocess.run(GIT + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def checkout(dst):
    b.rmtree(dst)
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("target"))
    git(dst, "init", "-q")
    git(dst, "add", "-A")
    git(dst, "commit", "-qm", "the fixture")


def wrapper(bindir):
    """A cargo-zigbuild on PATH that logs each build's start and end (seconds) to
    $BENCH_REUSE_LOG: the same bytes on every runner (the reuse key holds cargo-zigbuild's)."""
    os.makedirs(bindir, exist_ok=True)
    real = shutil.which("cargo-zigbuild")
    path = os.path.join(bindir, "cargo-zigbuild")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                f"s=$(date +%s.%N)\n'{real}' \"$@\"\nrc=$?\n"
                "[ \"$1\" = zigbuild ] && echo \"$s $(date +%s.%N) $*\" >> \"$BENCH_REUSE_LOG\"\n"
                "exit $rc\n")
    os.chmod(path, 0o755)


def cargo_runs(log):
    """The cargo-zigbuild runs logged: (seconds, arguments) each; the log emptied."""
    if not os.path.exists(log):
        return []
    with open(log) as f:
        lines = f.read().splitlines()
    os.unlink(log)
    return [(float(l.split()[1]) - float(l.split()[0]), " ".join(l.split()[2:])) for l in lines]


def env(runner, fresh):
    e = dict(os.environ)
    e["PATH"] = runner["bin"] + ":" + e["PATH"]
    e["CARGO_TARGET_DIR"] = runner["target"]
    e["CARGO_NET_OFFLINE"] = "true"
    e["IRONSTAR_NO_CACHE"] = "1"
    e["BENCH_REUSE_LOG"] = runner["log"]
    e.setdefault("RUSTUP_HOME", os.path.join(os.environ["HOME"], ".rustup"))
    for k in ("IRONSTAR_REPOSITORY", "IRONSTAR_REBUILD", "SOURCE_DATE_EPOCH"):
        e.pop(k, None)
    if fresh:
        e["HOME"] = runner["home"]
        e["CARGO_HOME"] = runner["cargo_home"]
    return e


def publish(src, runner, reg, prefix, fresh=False):
    mark = reg.proxy.mark()
    cmd = [b.IRONSTAR, "publish", "--cargo", "--workspace", "--locked", "--plain-http", "-q",
           "--repository", f"{reg.host}/{prefix}"]
    wall, rss, out = b.timed(["env", "-C", src] + cmd, env=env(runner, fresh))
    reqs = reg.proxy.requests_since(mark)
    spans = [(q[0], q[1]) for q in reqs]
    trips = b.round_trips(spans, reg.proxy.delay / 2)
    runs = cargo_runs(runner["log"])
    return {"wall": wall, "rss_kib": rss, "requests": len(reqs), "round_trips": trips,
            "after_first": trips - 1, "cargo_s": sum(r[0] for r in runs),
            "cargo_runs": [r[1] for r in runs],
            "refs": sorted(out.split())}


def runner(root):
    r = {"bin": os.path.join(root, "bin"), "log": os.path.join(root, "cargo.log"),
         "target": os.path.join(root, "target"), "home": os.path.join(root, "home"),
         "cargo_home": os.path.join(root, "cargo-home")}
    b.rmtree(root)
    for d in ("bin", "home", "cargo_home"):
        os.makedirs(r[d], exist_ok=True)
    wrapper(r["bin"])
    return r


def one_round(i, reg):
    work = os.path.join(b.WORK, "reuse", f"r{i}")
    src, clone = os.path.join(work, "src"), os.path.join(work, "clone")
    checkout(src)
    ci = runner(os.path.join(work, "ci"))
    prefix = f"r{i}"
    full = publish(src, ci, reg, prefix)
    assert len(full["cargo_runs"]) == 1, full

    b.rmtree(clone)
    git(work, "clone", "-q", src, clone)
    fresh = runner(os.path.join(work, "fresh"))
    unchanged = publish(clone, fresh, reg, prefix, fresh=True)
    assert unchanged["cargo_runs"] == [], unchanged
    assert unchanged["refs"] == full["refs"], (unchanged, full)

    main = os.path.join(src, "api", "src", "main.rs")
    with open(main) as f:
        text = f.read()
    with open(main, "w") as f:
        f.write(text.replace("serving", f"serving (round {i})"))
    git(src, "commit", "-qam", "api: one line")
    changed = publish(src, ci, reg, prefix)
    assert len(changed["cargo_runs"]) == 1 and "--package worker" not in changed["cargo_runs"][0]
    # api's own build, for the bound: the same change again, built alone without reuse.
    with open(main, "w") as f:
        f.write(text.replace("serving", f"serving (round {i}, alone)"))
    b.rmtree(os.path.join(work, "api-oci"))
    t0 = time.perf_counter()
    subprocess.run(["env", "-C", src, b.IRONSTAR, "build", "--cargo", "-p", "api", "--locked",
                    "-q", "-o", os.path.join(work, "api-oci")], env=env(ci, False), check=True,
                   stdout=subprocess.DEVNULL)
    api_alone = time.perf_counter() - t0
    api_cargo = sum(r[0] for r in cargo_runs(ci["log"]))
    return {"full": full, "unchanged": unchanged, "changed": changed,
            "api_alone_s": api_alone, "api_alone_cargo_s": api_cargo}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--binary", help="the ironstar to run [default: target/release/ironstar]")
    a = ap.parse_args()
    if a.binary:
        b.IRONSTAR = os.path.abspath(a.binary)
    os.makedirs(b.WORK, exist_ok=True)
    reg = b.registry("reuse", a.delay_ms / 1000)
    rounds = []
    try:
        for i in range(a.rounds):
            r = one_round(i, reg)
            b.log(f"round {i}: full {r['full']['wall']:.2f} s, unchanged "
                  f"{r['unchanged']['wall']:.3f} s, one changed {r['changed']['wall']:.2f} s "
                  f"(api alone {r['api_alone_s']:.2f} s)")
            rounds.append(r)
    finally:
        reg.stop()
        b.stop_all()
    med = lambda side, k: statistics.median(r[side][k] for r in rounds)
    summary = {"rounds": a.rounds, "delay_ms": a.delay_ms, "load": os.getloadavg(),
               "binary": os.path.relpath(b.IRONSTAR, b.ROOT)}
    for side in ("full", "unchanged", "changed"):
        for k in ("wall", "cargo_s", "requests", "round_trips", "after_first"):
            summary[f"{side}_{k}"] = med(side, k)
    summary["api_alone_s"] = statistics.median(r["api_alone_s"] for r in rounds)
    summary["api_alone_cargo_s"] = statistics.median(r["api_alone_cargo_s"] for r in rounds)
    path = os.path.join(b.WORK, "reuse.json")
    with open(path, "w") as f:
        json.dump({"machine": b.machine(), "summary": summary, "rounds": rounds}, f, indent=2)
    s = summary
    print(f"| workspace fixture, 3 images x 2 platforms, {a.delay_ms:.0f} ms a request "
          f"(median of {a.rounds}) | wall | cargo | requests | round trips (after the first) |")
    print("|---|---|---|---|---|")
    for side, what in (("full", "full publish, cold target directory"),
                       ("unchanged", "unchanged, fresh clone + fresh HOME/CARGO_HOME/target"),
                       ("changed", "one line changed in api")):
        print(f"| {what} | {s[side + '_wall']:.3f} s | {s[side + '_cargo_s']:.2f} s "
              f"| {s[side + '_requests']:.0f} | {s[side + '_round_trips']:.0f} "
              f"({s[side + '_after_first']:.0f}) |")
    print(f"| api built alone (`build --cargo -p api`, for the bound) | {s['api_alone_s']:.3f} s "
          f"| {s['api_alone_cargo_s']:.2f} s | | |")
    print(f"\nJSON: {os.path.relpath(path, b.ROOT)}")


if __name__ == "__main__":
    main()
