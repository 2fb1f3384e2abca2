#!/usr/bin/env python3
"""The build floor for one platform: SHA-256 of the binary's bytes, deflate (zlib level 6,
gzip wrapper) of the same bytes and SHA-256 of the compressed stream, streamed in 1 MiB
chunks.  bench.py runs one of these per platform at once (one platform a core)."""
import hashlib
import sys
import zlib

raw, gz = hashlib.sha256(), hashlib.sha256()
c = zlib.compressobj(6, zlib.DEFLATED, 31)
with open(sys.argv[1], "rb") as f:
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        raw.update(b)
        gz.update(c.compress(b))
gz.update(c.flush())
print(raw.hexdigest(), gz.hexdigest())
