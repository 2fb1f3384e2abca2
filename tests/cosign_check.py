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


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "genkey":
        genkey(args[0], args[1], int(args[2]) if len(args) > 2 else 15)
    elif cmd == "verify":
        verify(*args)
    else:
        fail(f"unknown command {cmd}")
