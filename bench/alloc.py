"""bench/run.sh --alloc: musl's allocator under threads (issue 35).

tests/fixtures/alloc-threads (8 threads building and dropping maps of strings) built three ways:
for glibc (plain `cargo build`), by ironstar with the default allocator (musl's), and by ironstar
with `--allocator mimalloc`; each run natively on this (amd64) machine, the three taking turns
going first from one round to the next. Reports the median time of each and the median of the
per-round ratios to the glibc build. JSON: target/bench/alloc.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests/fixtures/alloc-threads/Cargo.toml")
OUT = os.path.join(REPO, "target/bench/alloc")
IRONSTAR = os.path.join(REPO, "target/debug/ironstar")
MUSL = "x86_64-unknown-linux-musl"


def build():
    """The three binaries: name -> path."""
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "--manifest-path", FIXTURE,
         "--target-dir", os.path.join(OUT, "glibc")],
        check=True,
    )
    bins = {"glibc": os.path.join(OUT, "glibc/release/alloc-threads")}
    for alloc in ["system", "mimalloc"]:
        target_dir = os.path.join(OUT, alloc)
        subprocess.run(
            [IRONSTAR, "build", "--cargo", "--manifest-path", FIXTURE, "--target-dir", target_dir,
             "--allocator", alloc, "--platform", "linux/amd64", "-o",
             os.path.join(OUT, alloc + "-oci")],
            check=True, stdout=subprocess.DEVNULL,
        )
        name = "ironstar" if alloc == "system" else "ironstar mimalloc"
        bins[name] = os.path.join(target_dir, MUSL, "release/alloc-threads")
    return bins


def timed(path):
    start = time.perf_counter()
    out = subprocess.run([path], check=True, capture_output=True, text=True).stdout
    took = time.perf_counter() - start
    assert out.startswith("alloc-threads x86_64 "), out
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    bins = build()
    names = list(bins)
    times = {n: [] for n in names}
    ratios = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        got = {n: timed(bins[n]) for n in order}
        for n in names:
            times[n].append(got[n])
            ratios[n].append(got[n] / got["glibc"])
        print(f"round {r + 1}: " + ", ".join(f"{n} {got[n]:.2f} s" for n in names),
              file=sys.stderr)
    print(f"{'build':<20} {'median s':>9} {'x glibc':>8}")
    for n in names:
        print(f"{n:<20} {statistics.median(times[n]):>9.2f} {statistics.median(ratios[n]):>7.2f}x")
    with open(os.path.join(REPO, "target/bench/alloc.json"), "w") as f:
        json.dump({"rounds": args.rounds, "times": times, "ratios": ratios,
                   "loadavg": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
