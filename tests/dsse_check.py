#!/usr/bin/env python3
"""An independent verifier of provenance attestations for the tests: none of ironstar's code.

Written from the DSSE v1.0 protocol (envelope JSON, PAE), the in-toto Attestation Framework's
Statement v1, SLSA provenance v1, the Sigstore bundle v0.3 JSON and cosign's attestation
storage (the `sha256-<hex>.att` tag, layers `application/vnd.dsse.envelope.v1+json`), with
`cryptography`'s ECDSA P-256 / SHA-256 (the venv scripts/install-deps.sh makes).

  envelope FILE PUB DIGEST      FILE is a DSSE envelope (JSON): one signature must verify with
                                PUB over PAE(payloadType, payload), the payload must be an
                                in-toto Statement v1 of SLSA provenance v1 whose subject has
                                sha256 DIGEST (sha256:<hex>). Prints the statement.
  registry REGISTRY REPO REF PUB
                                over plain http: REF's digest, then its `.att` tag (each DSSE
                                layer checked as above, its blob against its descriptor) and its
                                Sigstore bundle referrers (the referrers API, else the
                                `sha256-<hex>` tag). Prints one JSON line: {"att": digest of the
                                .att manifest, "bundles": [referrer digests], "statement": ...}.

Helpers for the hostile-input tests (they make what an attacker could put in a registry):
  sign PAYLOAD_FILE KEY_PEM     a DSSE envelope of PAYLOAD_FILE as in-toto, signed with the
                                PKCS#8 key: printed.
  put-att REGISTRY REPO DIGEST FILE
                                over plain http, FILE as the only layer of the manifest under
                                `sha256-<hex of DIGEST>.att` (cosign's shape, empty config).
Exit 1 with one line on stderr on any failure.
"""

import base64
import hashlib
import json
import sys
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

IN_TOTO = "application/vnd.in-toto+json"
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
STATEMENT = "https://in-toto.io/Statement/v1"
SLSA = "https://slsa.dev/provenance/v1"
SIGN = "https://sigstore.dev/cosign/sign/v1"
ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"


def fail(msg):
    print(f"dsse_check: {msg}", file=sys.stderr)
    sys.exit(1)


def pae(payload_type, body):
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def load_key(path):
    with open(path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        fail(f"{path}: not an ECDSA P-256 public key")
    return key


def check_envelope(env, key, digest):
    """The statement of a DSSE envelope (a dict), verified."""
    for field in ("payloadType", "payload", "signatures"):
        if field not in env:
            fail(f"envelope without `{field}`")
    if env["payloadType"] != IN_TOTO:
        fail(f"payloadType {env['payloadType']!r}")
    body = base64.b64decode(env["payload"], validate=True)
    message = pae(env["payloadType"], body)
    good = False
    for s in env["signatures"]:
        try:
            key.verify(base64.b64decode(s["sig"]), message, ec.ECDSA(hashes.SHA256()))
            good = True
            break
        except (InvalidSignature, ValueError):
            continue
    if not good:
        fail("no signature of the envelope verifies with the key")
    st = json.loads(body)
    if st.get("_type") != STATEMENT:
        fail(f"_type {st.get('_type')!r}")
    if st.get("predicateType") != SLSA:
        fail(f"predicateType {st.get('predicateType')!r}")
    algo, _, hexd = digest.partition(":")
    if not any(s.get("digest", {}).get(algo) == hexd for s in st.get("subject", [])):
        fail(f"the statement's subject is not {digest}")
    return st


def get(url, accept=ACCEPT):
    req = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req) as r:
            return r.read(), r.headers
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None, None
        raise


def blob(base, repo, desc):
    data, _ = get(f"{base}/v2/{repo}/blobs/{desc['digest']}")
    if data is None:
        fail(f"blob {desc['digest']} missing")
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc["digest"] or len(data) != desc["size"]:
        fail(f"blob {desc['digest']} does not match its descriptor")
    return data


def registry(reg, repo, ref, pub):
    key = load_key(pub)
    base = f"http://{reg}"
    top, headers = get(f"{base}/v2/{repo}/manifests/{ref}")
    if top is None:
        fail(f"{repo}:{ref}: no such image")
    digest = "sha256:" + hashlib.sha256(top).hexdigest()
    hexd = digest.split(":")[1]
    out = {"att": None, "bundles": [], "statement": None}
    att, _ = get(f"{base}/v2/{repo}/manifests/sha256-{hexd}.att")
    if att is None:
        fail(f"no tag sha256-{hexd}.att")
    out["att"] = "sha256:" + hashlib.sha256(att).hexdigest()
    layers = [l for l in json.loads(att)["layers"] if l["mediaType"] == DSSE_LAYER]
    if not layers:
        fail("the .att manifest has no DSSE layer")
    for l in layers:
        if l.get("annotations", {}).get("predicateType") != SLSA:
            fail("a .att layer without the predicateType annotation")
        out["statement"] = check_envelope(json.loads(blob(base, repo, l)), key, digest)
    index, headers = get(f"{base}/v2/{repo}/referrers/{digest}")
    if index is None or not headers.get("Content-Type", "").startswith(
            "application/vnd.oci.image.index.v1+json"):
        index, _ = get(f"{base}/v2/{repo}/manifests/sha256-{hexd}")
    for d in (json.loads(index)["manifests"] if index else []):
        if d.get("artifactType") != BUNDLE:
            continue
        m, _ = get(f"{base}/v2/{repo}/manifests/{d['digest']}")
        if m is None or "sha256:" + hashlib.sha256(m).hexdigest() != d["digest"]:
            fail(f"referrer {d['digest']} missing or altered")
        m = json.loads(m)
        if m.get("annotations", {}).get("dev.sigstore.bundle.predicateType") == SIGN:
            continue  # an image signature in bundle form (cosign_check.py's to check)
        if m["subject"]["digest"] != digest or m.get("artifactType") != BUNDLE:
            fail(f"referrer {d['digest']}: not a bundle about {digest}")
        ann = m.get("annotations", {})
        if ann.get("dev.sigstore.bundle.content") != "dsse-envelope" or \
                ann.get("dev.sigstore.bundle.predicateType") != SLSA:
            fail(f"referrer {d['digest']}: bundle annotations {ann}")
        b = json.loads(blob(base, repo, m["layers"][0]))
        if b.get("mediaType") != BUNDLE or "publicKey" not in b.get("verificationMaterial", {}):
            fail(f"referrer {d['digest']}: not a key-signed bundle v0.3")
        check_envelope(b["dsseEnvelope"], key, digest)
        out["bundles"].append(d["digest"])
    if not out["bundles"]:
        fail(f"no bundle referrer of {digest}")
    print(json.dumps(out))


def sign(payload_file, key_file):
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(payload_file, "rb") as f:
        body = f.read()
    sig = key.sign(pae(IN_TOTO, body), ec.ECDSA(hashes.SHA256()))
    print(json.dumps({"payloadType": IN_TOTO, "payload": base64.b64encode(body).decode(),
                      "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]}))


def put_blob(base, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/", method="POST", data=b"")
    with urllib.request.urlopen(req) as r:
        loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    sep = "&" if "?" in loc else "?"
    req = urllib.request.Request(f"{loc}{sep}digest={digest}", method="PUT", data=data,
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).close()
    return {"digest": digest, "size": len(data)}


def put_att(reg, repo, digest, envelope_file):
    base = f"http://{reg}"
    with open(envelope_file, "rb") as f:
        layer = put_blob(base, repo, f.read())
    config = put_blob(base, repo, b"{}")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": [dict(layer, mediaType=DSSE_LAYER, annotations={
            "dev.cosignproject.cosign/signature": "", "predicateType": SLSA})],
    }).encode()
    tag = "sha256-" + digest.split(":")[1] + ".att"
    req = urllib.request.Request(f"{base}/v2/{repo}/manifests/{tag}", method="PUT", data=manifest,
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(req).close()


def main(argv):
    if len(argv) == 5 and argv[1] == "envelope":
        with open(argv[2], "rb") as f:
            try:
                env = json.load(f)
            except ValueError as e:
                fail(f"not JSON: {e}")
        try:
            st = check_envelope(env, load_key(argv[3]), argv[4])
        except ValueError as e:  # base64 or the payload's JSON
            fail(f"malformed: {e}")
        print(json.dumps(st))
    elif len(argv) == 6 and argv[1] == "registry":
        registry(*argv[2:])
    elif len(argv) == 4 and argv[1] == "sign":
        sign(argv[2], argv[3])
    elif len(argv) == 6 and argv[1] == "put-att":
        put_att(*argv[2:])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
