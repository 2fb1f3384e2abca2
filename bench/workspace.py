#!/usr/bin/env python3
"""Issue 19's benchmark: publishing N images together (`ironstar publish --cargo --workspace`)
against N single publishes one after another (`ironstar publish --cargo -p NAME`, as a script
publishing each service would), side by side, through the proxy adding 20 ms to every request.

The images are those of tests/fixtures/workspace (api, migrate, worker: N = 3, two platforms
each), built in its own target directory (warmed first, so both sides run a no-op cargo);
every publish goes to fresh repositories of one registry, with no layer cache (no mounts
between the sides). The sides alternate order from round to round; medians are reported, and
the median of the same-round ratios.

    bash bench/run.sh --workspace [--rounds N] [--delay-ms 20]

Output: a table on stdout and target/bench/workspace.json.
"""

import argparse
import json
import os
import statistics
import subprocess

import bench as b

FIXTURE = os.path.join(b.ROOT, "tests", "fixtures", "workspace")
IMAGES = ["api", "migrate", "worker"]


def env():
    e = dict(os.environ)
    e.update({
        "CARGO_TARGET_DIR": os.path.join(b.WORK, "workspace-target"),
        "IRONSTAR_NO_CACHE": "1",
        "CARGO_NET_OFFLINE": "true",
    })
    e.pop("IRONSTAR_REPOSITORY", None)
    return e


def publish(args, reg):
    """One `ironstar publish` run in the fixture; its time and what went through the proxy."""
    mark = reg.proxy.mark()
    cmd = [b.IRONSTAR, "publish", "--cargo", "--locked", "--plain-http", "-q"] + args
    wall, rss, out = b.timed(["env", "-C", FIXTURE] + cmd, env=env())
    reqs = reg.proxy.requests_since(mark)
    trips = b.round_trips([(q[0], q[1]) for q in reqs], reg.proxy.delay / 2)
    return {"wall": wall, "rss_kib": rss, "requests": len(reqs), "round_trips": trips,
            "refs": out.split()}


def together(reg, prefix):
    return publish(["--workspace", "--repository", f"{reg.host}/{prefix}"], reg)


def singles(reg, prefix):
    runs = [publish(["-p", n, "--repository", f"{reg.host}/{prefix}/{n}"], reg) for n in IMAGES]
    return {"wall": sum(r["wall"] for r in runs),
            "requests": sum(r["requests"] for r in runs),
            "round_trips": sum(r["round_trips"] for r in runs),
            "each": [r["wall"] for r in runs],
            "refs": [x for r in runs for x in r["refs"]]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--delay-ms", type=float, default=20)
    a = ap.parse_args()
    os.makedirs(b.WORK, exist_ok=True)
    b.log("warming the fixture's target directory")
    subprocess.run(["env", "-C", FIXTURE, b.IRONSTAR, "build", "--cargo", "--workspace",
                    "--locked", "-q", "-o", os.path.join(b.WORK, "workspace-oci")],
                   env=env(), check=True, stdout=subprocess.DEVNULL)
    reg = b.registry("workspace", a.delay_ms / 1000)
    rounds = []
    try:
        for i in range(a.rounds):
            sides = [("together", together), ("singles", singles)]
            if i % 2:
                sides.reverse()
            r = {name: f(reg, f"r{i}-{name}") for name, f in sides}
            digests = lambda refs: sorted(x.split("@")[1] for x in refs)
            assert digests(r["together"]["refs"]) == digests(r["singles"]["refs"]), r
            r["ratio"] = r["together"]["wall"] / r["singles"]["wall"]
            b.log(f"round {i}: together {r['together']['wall']:.3f} s, "
                  f"singles {r['singles']['wall']:.3f} s ({r['ratio']:.2f}x)")
            rounds.append(r)
    finally:
        reg.stop()
        b.stop_all()
    med = lambda side, k: statistics.median(r[side][k] for r in rounds)
    summary = {
        "images": len(IMAGES), "rounds": a.rounds, "delay_ms": a.delay_ms,
        "together_s": med("together", "wall"), "singles_s": med("singles", "wall"),
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "together_requests": med("together", "requests"),
        "singles_requests": med("singles", "requests"),
        "together_round_trips": med("together", "round_trips"),
        "singles_round_trips": med("singles", "round_trips"),
        "load": os.getloadavg(),
    }
    path = os.path.join(b.WORK, "workspace.json")
    with open(path, "w") as f:
        json.dump({"machine": b.machine(), "summary": summary, "rounds": rounds}, f, indent=2)
    print("| N = 3 images, 2 platforms each | together (1 publish) | 3 single publishes | ratio |")
    print("|---|---|---|---|")
    print(f"| wall (median of {a.rounds}) | {summary['together_s']:.3f} s "
          f"| {summary['singles_s']:.3f} s | **{summary['ratio']:.2f}×** |")
    print(f"| requests | {summary['together_requests']:.0f} "
          f"| {summary['singles_requests']:.0f} | |")
    print(f"| round trips waited one after another | {summary['together_round_trips']:.0f} "
          f"| {summary['singles_round_trips']:.0f} | |")
    print(f"\nJSON: {os.path.relpath(path, b.ROOT)}")


if __name__ == "__main__":
    main()
