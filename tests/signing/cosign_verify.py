#!/usr/bin/env python3
"""Checks a cosign key-pair signature of an image the way `cosign verify --key KEY
--insecure-ignore-tlog IMAGE` does, with tools kiln did not write: skopeo reads the registry,
Python's `cryptography` (Debian: python3-cryptography) checks the ECDSA signature.

    cosign_verify.py REPO:TAG PUBLIC_KEY.pem [--signatures-of sha256:HEX]

1. The tag's current manifest digest: sha256 of `skopeo inspect --raw docker://REPO:TAG`.
2. The signature image `REPO:sha256-<hex>.sig` of that digest (or, with --signatures-of,
   of another digest: the signatures made for what the tag used to point at), its manifest
   read with `skopeo inspect --raw` and its layers copied with `skopeo copy ... dir:`.
3. Each `application/vnd.dev.cosign.simplesigning.v1+json` layer: its bytes hash to its
   descriptor, its payload's `critical.image.docker-manifest-digest` is the tag's current
   digest, its `critical.identity.docker-reference` is REPO, its type is cosign's, and the
   base64 DER in the `dev.cosignproject.cosign/signature` annotation is a valid
   ECDSA-SHA256 signature of the payload bytes under PUBLIC_KEY.

Exit 0 and "verified" when at least one layer passes every check; otherwise exit 1 with
each layer's failure. Plain-HTTP loopback registries are read with --tls-verify=false.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
except ImportError:
    print("missing Python's cryptography: apt-get install python3-cryptography", file=sys.stderr)
    sys.exit(3)

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
TYPE = "cosign container image signature"


def skopeo(*args):
    out = subprocess.run(["skopeo", *args], capture_output=True)
    if out.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)}: {out.stderr.decode(errors='replace')}")
    return out.stdout


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--signatures-of"):
        print(__doc__, file=sys.stderr)
        return 2
    image, key_path = argv[0], argv[1]
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    current = "sha256:" + hashlib.sha256(
        skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{image}")
    ).hexdigest()
    signed = argv[3] if len(argv) == 4 else current
    sig_ref = f"{repo}:{signed.replace(':', '-')}.sig"
    with open(key_path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    try:
        manifest = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{sig_ref}"))
    except RuntimeError as e:
        print(f"no signatures for {current} ({sig_ref}): {e}", file=sys.stderr)
        return 1
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        skopeo("copy", "--src-tls-verify=false", f"docker://{sig_ref}", f"dir:{tmp}")
        for layer in manifest.get("layers", []):
            problem = check(layer, tmp, key, repo, current)
            if problem is None:
                print(f"verified: {image} is {current}, signed in {sig_ref}")
                return 0
            failures.append(f"{layer.get('digest')}: {problem}")
    print(f"no valid signature of {image} ({current}) in {sig_ref}:", file=sys.stderr)
    for failure in failures:
        print(f"  {failure}", file=sys.stderr)
    return 1


def check(layer, blob_dir, key, repo, digest):
    if layer.get("mediaType") != SIMPLE_SIGNING:
        return f"media type {layer.get('mediaType')}"
    with open(os.path.join(blob_dir, layer["digest"].split(":", 1)[1]), "rb") as f:
        payload = f.read()
    if "sha256:" + hashlib.sha256(payload).hexdigest() != layer["digest"]:
        return "payload bytes do not match the layer digest"
    claim = json.loads(payload)
    critical = claim["critical"]
    if critical["type"] != TYPE:
        return f"payload type {critical['type']!r}"
    if critical["image"]["docker-manifest-digest"] != digest:
        return f"payload names {critical['image']['docker-manifest-digest']}, the tag is {digest}"
    if critical["identity"]["docker-reference"] != repo:
        return f"payload names {critical['identity']['docker-reference']}, not {repo}"
    signature = base64.b64decode(layer.get("annotations", {}).get(SIGNATURE, ""))
    try:
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the signature does not verify with the public key"
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
