#!/usr/bin/env python3
"""What the provenance attestation adds to a push (issue 31): `ironstar push` of the same
two-platform image unsigned, signed (`--sign-key --no-provenance`) and signed with its
provenance (`--sign-key`, the layout attested at build time), each to a fresh docker-registry
(no referrers API: the referrers-tag path) through bench/delay_proxy.py, rotating which goes
first (pushes sign with the key as plain PKCS#8: the push is measured, not the key's scrypt);
medians over the rounds of the wall time, the requests and the round trips one after
another, for a first push and the no-op re-push.

    ~/.local/share/ironstar/venv/bin/python3 bench/provenance.py [--rounds 5] [--delay-ms 20]
    IRONSTAR_BIN=target/debug/ironstar …   # another build of ironstar

Needs docker-registry and cargo with the two musl targets. Writes target/bench/provenance.json.
"""

import argparse
import json
import os
import shutil
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from sign import PASSWORD, fixture_binaries, pair, sh  # noqa: E402
import sign  # noqa: E402

# $IRONSTAR_BIN (bench/sign.py): another build of ironstar, e.g. target/debug/ironstar (the round
# trips are the same, the times a little longer).
IRONSTAR = sign.IRONSTAR


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--delay-ms", type=float, default=20)
    a = ap.parse_args()
    if "IRONSTAR_BIN" not in os.environ:
        sh(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT)
    work = os.path.join(ROOT, "target/bench/provenance")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    bins = fixture_binaries(work)
    sh([sys.executable, os.path.join(ROOT, "tests/cosign_check.py"), "genkey", work, PASSWORD,
        "16"])
    key = os.path.join(work, "cosign.key")
    # Pushes sign with the same key as plain PKCS#8: what is measured is the push, not the key's
    # scrypt decryption (bench/sign.py measures that).
    pkcs8 = os.path.join(work, "key.pkcs8.pem")
    image = os.path.join(work, "app.toml")
    with open(image, "w") as f:
        f.write('name = "app"\nrepository = "registry.invalid/bench"\n[binaries]\n'
                f'"linux/amd64" = "{bins["amd64"]}"\n"linux/arm64" = "{bins["arm64"]}"\n')
    plain, attested = os.path.join(work, "plain"), os.path.join(work, "attested")
    env = dict(os.environ, COSIGN_PASSWORD=PASSWORD)
    sh([IRONSTAR, "-q", "build", image, "--no-cache", "--output", plain])
    sh([IRONSTAR, "-q", "build", image, "--no-cache", "--output", attested, "--sign-key", key],
       env=env)
    delay = a.delay_ms / 1000
    kinds = [("unsigned", plain, []),
             ("signed", attested, ["--sign-key", pkcs8, "--no-provenance"]),
             ("provenance", attested, ["--sign-key", pkcs8])]
    rounds = []
    for i in range(a.rounds):
        order = kinds[i % 3:] + kinds[:i % 3]
        r = {name: pair(layout, work, delay, extra) for name, layout, extra in order}
        rounds.append(r)
        print(f"round {i + 1}/{a.rounds}: " + ", ".join(
            f"{k} {r[k]['first']['wall']:.3f} s / {r[k]['first']['round_trips']} rt"
            for k, _, _ in kinds), file=sys.stderr)
    summary = {"delay_ms": a.delay_ms, "rounds": a.rounds}
    for step in ("first", "repush"):
        s = {}
        for kind, _, _ in kinds:
            for k in ("wall", "requests", "round_trips"):
                s[f"{kind}_{k}"] = statistics.median(r[kind][step][k] for r in rounds)
        for kind in ("signed", "provenance"):
            s[f"{kind}_extra_ms"] = statistics.median(
                (r[kind][step]["wall"] - r["unsigned"][step]["wall"]) * 1000 for r in rounds)
        summary[step] = s
    with open(os.path.join(ROOT, "target/bench/provenance.json"), "w") as f:
        json.dump({"summary": summary, "rounds": rounds}, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
