#!/usr/bin/env python3
"""An independent cosign-format checker for the signing tests: none of ironstar's code.

Written from cosign's specs/SIGNATURE_SPEC.md and key format (go-securesystemslib's
`encrypted` package: scrypt + nacl/secretbox around a PKCS#8 key, in PEM), with the
`cryptography` and `pynacl` packages (scripts/install-deps.sh puts them in the venv).

  genkey DIR PASSWORD [LOG_N]   cosign.key (ENCRYPTED SIGSTORE PRIVATE KEY), cosign.pub,
                                key.pkcs8.pem (the same key unencrypted), made as cosign does
  verify REGISTRY REPO REF PUB [IDENTITY]
                                fetch REF (tag or digest) over plain http, then for the index and
                                each platform manifest the tag sha256-<hex>.sig: each
                                simple-signing layer's payload blob must hash to its descriptor,
                                one ECDSA P-256 signature must verify over the payload bytes, and
                                that payload must name the digest (and IDENTITY). Prints one JSON
                                line: {"<digest>": "<digest of its .sig manifest>", ...}.
  bundles REGISTRY REPO REF PUB
                                cosign 3's form (`cosign sign`, new bundle format): for the index
                                and each platform manifest, its referrers (the referrers API, else
                                the `sha256-<hex>` tag) of artifactType Sigstore bundle v0.3 whose
                                manifest says predicateType https://sigstore.dev/cosign/sign/v1:
                                the manifest and bundle blob must match their descriptors, the
                                bundle be key-signed (verificationMaterial.publicKey.hint = base64
                                SHA-256 of PUB's DER SubjectPublicKeyInfo) with one DSSE signature
                                that verifies over PAE(payloadType, payload), and the payload an
                                in-toto Statement v1 of that predicate type whose subject is the
                                digest. Written from the Sigstore bundle v0.3 JSON, DSSE v1.0, the
                                in-toto Statement v1, and cosign's sign.go/write.go (see
                                docs/src/signing.md). Prints one JSON line: {"<digest>": [referrer
                                digests that verify], ...}.
For the hostile-input tests (what an attacker could put in a registry):
  put-referrer REGISTRY REPO DIGEST FILE
                                over plain http, FILE as the one layer of a signature bundle
                                referrer of DIGEST, listed in the `sha256-<hex>` referrers tag.
Exit 1 with one line on stderr on any failure.
"""

import base64
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = "application/vnd.oci.empty.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT = "https://in-toto.io/Statement/v1"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def fail(msg):
    print(f"cosign_check: {msg}", file=sys.stderr)
    sys.exit(1)


def go_pem(kind, data):
    """encoding/pem's EncodeToMemory: 64-column base64 lines."""
    b = base64.b64encode(data).decode()
    lines = [b[i:i + 64] for i in range(0, len(b), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def genkey(out, password, log_n=15):
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    n = 1 << log_n
    box_key = Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(password.encode())
    ciphertext = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
    b64 = lambda x: base64.b64encode(x).decode()
    # Go's json.Marshal of go-securesystemslib's struct: this field order, compact.
    envelope = json.dumps({
        "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(ciphertext),
    }, separators=(",", ":"))
    with open(os.path.join(out, "cosign.key"), "w") as f:
        f.write(go_pem("ENCRYPTED SIGSTORE PRIVATE KEY", envelope.encode()))
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    with open(os.path.join(out, "cosign.pub"), "wb") as f:
        f.write(pub)
    with open(os.path.join(out, "key.pkcs8.pem"), "w") as f:
        f.write(go_pem("PRIVATE KEY", der))


def get(registry, repo, kind, ref, accept=ACCEPT):
    url = f"http://{registry}/v2/{repo}/{kind}/{ref}"
    req = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        fail(f"GET {url}: {e.code}")


def strict_payload(raw):
    """containers/image's reading: exactly critical + optional; critical exactly three keys."""
    p = json.loads(raw)
    if set(p) != {"critical", "optional"}:
        raise ValueError(f"payload keys {sorted(p)}")
    if p["optional"] is not None and not isinstance(p["optional"], dict):
        raise ValueError("optional is neither null nor an object")
    c = p["critical"]
    if set(c) != {"identity", "image", "type"} or set(c["identity"]) != {"docker-reference"} \
            or set(c["image"]) != {"docker-manifest-digest"}:
        raise ValueError(f"critical: {c}")
    if c["type"] != "cosign container image signature":
        raise ValueError(f"type {c['type']}")
    return c["identity"]["docker-reference"], c["image"]["docker-manifest-digest"]


def verify_digest(registry, repo, digest, pub, identity):
    tag = "sha256-" + digest.split(":", 1)[1] + ".sig"
    raw = get(registry, repo, "manifests", tag)
    if raw is None:
        fail(f"{digest}: no signature tag {tag}")
    m = json.loads(raw)
    why = []
    for layer in m.get("layers", []):
        if layer.get("mediaType") != SIMPLESIGNING:
            continue
        payload = get(registry, repo, "blobs", layer["digest"], "*/*")
        if payload is None or "sha256:" + hashlib.sha256(payload).hexdigest() != layer["digest"] \
                or len(payload) != layer["size"]:
            fail(f"{digest}: payload blob {layer['digest']} does not match its descriptor")
        sig = base64.b64decode(layer.get("annotations", {}).get(SIG_ANNOTATION, ""))
        try:
            pub.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            why.append("signature does not verify")
            continue
        try:
            ref, signed = strict_payload(payload)
        except (ValueError, KeyError, TypeError) as e:
            why.append(f"payload: {e}")
            continue
        if signed != digest:
            why.append(f"payload signs {signed}")
            continue
        if identity is not None and ref != identity:
            why.append(f"payload names {ref}, not {identity}")
            continue
        return "sha256:" + hashlib.sha256(raw).hexdigest()
    fail(f"{digest}: no signature verifies ({'; '.join(why) or 'no simple-signing layer'})")


def verify(registry, repo, ref, pub_path, identity=None):
    with open(pub_path, "rb") as f:
        pub = serialization.load_pem_public_key(f.read())
    top = get(registry, repo, "manifests", ref)
    if top is None:
        fail(f"{repo}:{ref}: no such image")
    digest = "sha256:" + hashlib.sha256(top).hexdigest()
    subjects = [digest] + [m["digest"] for m in json.loads(top).get("manifests", [])]
    print(json.dumps({d: verify_digest(registry, repo, d, pub, identity) for d in subjects}))


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def referrers(registry, repo, digest):
    """The referrers API's index, else the `sha256-<hex>` tag's; their descriptors."""
    url = f"http://{registry}/v2/{repo}/referrers/{digest}"
    req = urllib.request.Request(url, headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            if r.headers.get("Content-Type", "").startswith("application/vnd.oci.image.index"):
                return json.loads(r.read())["manifests"]
    except urllib.error.HTTPError as e:
        if e.code not in (404, 405):
            fail(f"GET {url}: {e.code}")
    raw = get(registry, repo, "manifests", "sha256-" + digest.split(":", 1)[1])
    return json.loads(raw)["manifests"] if raw else []


def check_bundle(registry, repo, digest, desc, pub, hint):
    """Why the bundle referrer `desc` does not sign `digest`, or None when it does."""
    raw = get(registry, repo, "manifests", desc["digest"])
    if raw is None or sha256(raw) != desc["digest"]:
        return "a referrer missing or not matching its digest"
    m = json.loads(raw)
    ann = m.get("annotations", {})
    if ann.get("dev.sigstore.bundle.predicateType") != SIGN_PREDICATE:
        return "skip"
    if ann.get("dev.sigstore.bundle.content") != "dsse-envelope" \
            or m.get("artifactType") != BUNDLE or m["config"]["mediaType"] != EMPTY \
            or m.get("subject", {}).get("digest") != digest or len(m["layers"]) != 1 \
            or m["layers"][0]["mediaType"] != BUNDLE:
        return f"referrer {desc['digest']}: not a signature bundle of {digest}"
    layer = m["layers"][0]
    data = get(registry, repo, "blobs", layer["digest"], "*/*")
    if data is None or sha256(data) != layer["digest"] or len(data) != layer["size"]:
        return f"bundle blob {layer['digest']} does not match its descriptor"
    b = json.loads(data)
    if b.get("mediaType") != BUNDLE:
        return f"bundle mediaType {b.get('mediaType')!r}"
    if b.get("verificationMaterial", {}).get("publicKey", {}).get("hint") != hint:
        return "the bundle's key hint is not this key's"
    env = b.get("dsseEnvelope")
    if not env or env.get("payloadType") != IN_TOTO or len(env.get("signatures", [])) != 1:
        return "no DSSE envelope of in-toto with exactly one signature"
    body = base64.b64decode(env["payload"], validate=True)
    t = env["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)
    try:
        pub.verify(base64.b64decode(env["signatures"][0]["sig"]), pae, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return "the envelope's signature does not verify"
    st = json.loads(body)
    if st.get("_type") != STATEMENT or st.get("predicateType") != SIGN_PREDICATE:
        return f"statement {st.get('_type')!r} of {st.get('predicateType')!r}"
    hexd = digest.split(":", 1)[1]
    if not any(x.get("digest", {}).get("sha256") == hexd for x in st.get("subject", [])):
        return f"a statement about another manifest, not {digest}"
    return None


def bundles(registry, repo, ref, pub_path):
    with open(pub_path, "rb") as f:
        pub = serialization.load_pem_public_key(f.read())
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    hint = base64.b64encode(hashlib.sha256(der).digest()).decode()
    top = get(registry, repo, "manifests", ref)
    if top is None:
        fail(f"{repo}:{ref}: no such image")
    digest = sha256(top)
    subjects = [digest] + [m["digest"] for m in json.loads(top).get("manifests", [])]
    out = {}
    for d in subjects:
        good, why = [], []
        for desc in referrers(registry, repo, d):
            if desc.get("artifactType") != BUNDLE:
                continue
            problem = check_bundle(registry, repo, d, desc, pub, hint)
            if problem is None:
                good.append(desc["digest"])
            elif problem != "skip":
                why.append(problem)
        if not good:
            fail(f"{d}: no signature bundle verifies ({'; '.join(why) or 'none found'})")
        out[d] = good
    print(json.dumps(out))


def put(url, data, content_type, method="PUT"):
    req = urllib.request.Request(url, method=method, data=data,
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers


def put_blob(registry, repo, data):
    base = f"http://{registry}"
    loc = put(f"{base}/v2/{repo}/blobs/uploads/", b"", "application/octet-stream", "POST")
    loc = loc["Location"]
    loc = base + loc if loc.startswith("/") else loc
    sep = "&" if "?" in loc else "?"
    put(f"{loc}{sep}digest={sha256(data)}", data, "application/octet-stream")
    return {"digest": sha256(data), "size": len(data)}


def put_referrer(registry, repo, digest, bundle_file):
    subject = get(registry, repo, "manifests", digest)
    with open(bundle_file, "rb") as f:
        layer = put_blob(registry, repo, f.read())
    config = put_blob(registry, repo, b"{}")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": BUNDLE, "config": dict(config, mediaType=EMPTY),
        "layers": [dict(layer, mediaType=BUNDLE)],
        "subject": {"mediaType": json.loads(subject)["mediaType"], "digest": digest,
                    "size": len(subject)},
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                        "dev.sigstore.bundle.predicateType": SIGN_PREDICATE},
    }).encode()
    mt = "application/vnd.oci.image.manifest.v1+json"
    put(f"http://{registry}/v2/{repo}/manifests/{sha256(manifest)}", manifest, mt)
    tag = "sha256-" + digest.split(":", 1)[1]
    raw = get(registry, repo, "manifests", tag)
    index = json.loads(raw) if raw else {"schemaVersion": 2, "manifests": [],
                                         "mediaType": "application/vnd.oci.image.index.v1+json"}
    index["manifests"].append({"mediaType": mt, "digest": sha256(manifest), "size": len(manifest),
                               "artifactType": BUNDLE})
    put(f"http://{registry}/v2/{repo}/manifests/{tag}", json.dumps(index).encode(),
        "application/vnd.oci.image.index.v1+json")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "genkey":
        genkey(args[0], args[1], int(args[2]) if len(args) > 2 else 15)
    elif cmd == "verify":
        verify(*args)
    elif cmd == "bundles":
        bundles(*args)
    elif cmd == "put-referrer":
        put_referrer(*args)
    else:
        fail(f"unknown command {cmd}")
