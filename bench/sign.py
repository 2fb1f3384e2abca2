#!/usr/bin/env python3
"""What signing adds to a push (issue 22): `ironstar push` of the same two-platform layout with
and without `--sign-key`, side by side, each against a fresh docker-registry reached through
bench/delay_proxy.py (a fixed delay on every request), alternating which goes first, several
rounds; medians of the same-round ratios, for a first push and for the no-op re-push. A third
push signs with the same key as plain PKCS#8, to tell signing from the key's decryption.

    ~/.local/share/ironstar/venv/bin/python3 bench/sign.py [--rounds 7] [--delay-ms 20]

Run with the venv's Python (scripts/install-deps.sh): the key is made as cosign makes it
(tests/cosign_check.py genkey: scrypt N=2^16, cosign's current default, + nacl/secretbox), so a
signed push also pays the key's decryption. Needs docker-registry and cargo with the two musl
targets. Writes target/bench/sign.json.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from delay_proxy import round_trips  # noqa: E402
from registry import Registry  # noqa: E402

# $IRONSTAR_BIN: another build of ironstar (not built here); default the release build, built first.
IRONSTAR = os.environ.get("IRONSTAR_BIN", os.path.join(ROOT, "target/release/ironstar"))
PASSWORD = "bench-password"


def sh(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def fixture_binaries(work):
    """tests/fixtures/hello, static, for amd64 and arm64 (as the tests build it)."""
    target_dir = os.path.join(ROOT, "target/test-fixtures/hello")
    out = {}
    for arch, t in [("amd64", "x86_64-unknown-linux-musl"), ("arm64", "aarch64-unknown-linux-musl")]:
        var = t.upper().replace("-", "_")
        env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
        env.pop("RUSTFLAGS", None)
        env[f"CARGO_TARGET_{var}_LINKER"] = "rust-lld"
        env[f"CARGO_TARGET_{var}_RUSTFLAGS"] = "-C target-feature=+crt-static"
        sh(["cargo", "build", "--release", "--quiet", "--locked", "--target", t],
           cwd=os.path.join(ROOT, "tests/fixtures/hello"), env=env)
        out[arch] = os.path.join(target_dir, t, "release/hello")
    return out


def push(layout, reg, extra):
    """One `ironstar push` through the proxy with `extra` flags: wall seconds, requests, round
    trips."""
    args = [IRONSTAR, "-q", "push", "--layout", layout, "--plain-http",
            "--repository", f"{reg.proxy.host}/bench"] + extra
    env = dict(os.environ, IRONSTAR_NO_CACHE="1", COSIGN_PASSWORD=PASSWORD)
    env.pop("IRONSTAR_SIGN_KEY", None)
    mark = reg.proxy.mark()
    t0 = time.monotonic()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    reqs = reg.proxy.requests_since(mark)
    return {"wall": wall, "requests": len(reqs),
            "round_trips": round_trips([(q[0], q[1]) for q in reqs], reg.proxy.delay / 2)}


def pair(layout, work, delay, extra):
    """A first push to a fresh registry, then the no-op re-push."""
    reg = Registry(tempfile.mkdtemp(dir=work), delay)
    try:
        return {"first": push(layout, reg, extra), "repush": push(layout, reg, extra)}
    finally:
        reg.stop()


def key_decryption(layout, key, n=5):
    """Seconds the key's decryption (scrypt) costs a push: a push refused for a wrong password
    (it fails right after the key derivation, before any request) minus `ironstar --version`."""
    env = dict(os.environ, COSIGN_PASSWORD="wrong")

    def timed(args):
        t0 = time.monotonic()
        subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.monotonic() - t0
    refused = [timed([IRONSTAR, "push", "--layout", layout, "--repository", "127.0.0.1:1/x",
                      "--plain-http", "--sign-key", key]) for _ in range(n)]
    start = [timed([IRONSTAR, "--version"]) for _ in range(n)]
    return statistics.median(refused) - statistics.median(start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--delay-ms", type=float, default=20)
    a = ap.parse_args()
    if "IRONSTAR_BIN" not in os.environ:
        sh(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT)
    work = os.path.join(ROOT, "target/bench/sign")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    bins = fixture_binaries(work)
    layout = os.path.join(work, "layout")
    sh([IRONSTAR, "-q", "build", "--no-cache", "--output", layout,
        "--binary", f"linux/amd64={bins['amd64']}", "--binary", f"linux/arm64={bins['arm64']}"])
    sh([sys.executable, os.path.join(ROOT, "tests/cosign_check.py"), "genkey", work, PASSWORD,
        "16"])
    key = os.path.join(work, "cosign.key")
    # The same key unencrypted: signing without the scrypt key derivation.
    pkcs8 = os.path.join(work, "key.pkcs8.pem")
    delay = a.delay_ms / 1000
    rounds = []
    for i in range(a.rounds):
        order = [("unsigned", None), ("signed", key), ("signed_pkcs8", pkcs8)]
        order = order[i % 3:] + order[:i % 3]
        r = {name: pair(layout, work, delay, ["--sign-key", k] if k else [])
             for name, k in order}
        rounds.append(r)
        print(f"round {i + 1}/{a.rounds}: first {r['signed']['first']['wall']:.3f} s signed, "
              f"{r['unsigned']['first']['wall']:.3f} s unsigned", file=sys.stderr)

    def med(kind, step, key_):
        return statistics.median(r[kind][step][key_] for r in rounds)

    def ratio(step, kind="signed"):
        return statistics.median(r[kind][step]["wall"] / r["unsigned"][step]["wall"]
                                 for r in rounds)

    summary = {"delay_ms": a.delay_ms, "rounds": a.rounds,
               "key_decryption_ms": key_decryption(layout, key) * 1000}
    for step in ("first", "repush"):
        summary[step] = {
            "ratio_signed_unsigned": ratio(step),
            "ratio_signed_pkcs8_unsigned": ratio(step, "signed_pkcs8"),
            "extra_ms": statistics.median(
                (r["signed"][step]["wall"] - r["unsigned"][step]["wall"]) * 1000 for r in rounds),
            **{f"{kind}_{k}": med(kind, step, k) for kind in ("signed", "signed_pkcs8", "unsigned")
               for k in ("wall", "requests", "round_trips")},
        }
    with open(os.path.join(ROOT, "target/bench/sign.json"), "w") as f:
        json.dump({"summary": summary, "rounds": rounds}, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
