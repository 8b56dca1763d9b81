#!/usr/bin/env python3
"""An independent verifier of ZhilyeGO's audit log, written from docs/audit.md alone.

It takes an export (`zhilego audit export`) and the service's audit API, and checks for random
events: the checkpoint's signature (C2SP signed note, Ed25519), each event's leaf hash built
from its stored fields, its inclusion proof from the API against the checkpoint's root
(RFC 9162 §2.1.3.2), the root recomputed from all exported leaves, and consistency proofs from
the API between random tree sizes (§2.1.4.2). Standard library plus PyPI `cryptography`.

Usage: audit_verify.py --url URL --token JWT --export FILE [--samples N] [--seed S]
Exit 0 when everything verifies; 1 with the reason otherwise.
"""
import argparse
import base64
import hashlib
import json
import random
import struct
import sys
import urllib.request
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TAG = b"zhilego-audit-leaf/v1"


def sha256(data):
    return hashlib.sha256(data).digest()


def string(s):
    b = s.encode("utf-8")
    return struct.pack(">I", len(b)) + b


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def micros(text):
    # RFC 3339 in UTC as the service writes it: 2026-12-01T10:00:00[.ffffff]Z
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, _, rest = text.partition(".")
    frac = ""
    offset = ""
    if rest:
        digits = ""
        for i, c in enumerate(rest):
            if c.isdigit():
                digits += c
            else:
                offset = rest[i:]
                break
        frac = digits
    else:
        main, offset = main[:19], main[19:]
    base = datetime.fromisoformat(main + offset).astimezone(timezone.utc)
    seconds = int((base - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds())
    frac_us = int((frac + "000000")[:6]) if frac else 0
    return seconds * 1_000_000 + frac_us


def leaf_data(e):
    return (
        TAG
        + struct.pack(">Q", e["position"])
        + string(e["aggregate_type"])
        + string(e["aggregate_id"])
        + struct.pack(">Q", e["sequence"])
        + string(e["event_type"])
        + string(e["event_version"])
        + string(canonical(e["payload"]))
        + string(canonical(e["metadata"]))
        + struct.pack(">q", micros(e["recorded_at"]))
    )


def leaf_hash(e):
    return sha256(b"\x00" + leaf_data(e))


def node(left, right):
    return sha256(b"\x01" + left + right)


def largest_power_below(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = largest_power_below(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf, index, size, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, proof, first_root, second_root):
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof and first & (first - 1):
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def open_checkpoint(text, public_key):
    """Checks the signed note; returns (origin, tree size, root)."""
    cut = text.rfind("\n\n")
    if cut < 0:
        raise ValueError("no blank line in the note")
    body = text[: cut + 1]
    lines = body.split("\n")
    origin, size, root_b64 = lines[0], lines[1], lines[2]
    key_id = sha256(origin.encode() + b"\n" + b"\x01" + public_key)[:4]
    key = Ed25519PublicKey.from_public_bytes(public_key)
    for line in text[cut + 2 :].splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError("a signature line does not start with an em dash")
        name, _, sig = line[2:].partition(" ")
        raw = base64.b64decode(sig, validate=True)
        if name == origin and len(raw) == 68 and raw[:4] == key_id:
            try:
                key.verify(raw[4:], body.encode("utf-8"))
            except InvalidSignature:
                raise ValueError("the checkpoint's signature does not verify")
            root = base64.b64decode(root_b64, validate=True)
            if len(root) != 32 or not size.isdigit():
                raise ValueError("not a checkpoint")
            return origin, int(size), root
    raise ValueError("no signature by the key " + origin)


class Api:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def get(self, path):
        req = urllib.request.Request(self.url + path, headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.loads(res.read())


def b64(s):
    return base64.b64decode(s, validate=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    api = Api(args.url, args.token)

    public_key = b64(api.get("/api/v1/audit/checkpoints/key")["public_key"])
    latest = api.get("/api/v1/audit/checkpoints/latest")
    origin, size, root = open_checkpoint(latest["text"], public_key)
    if latest["tree_size"] != size or b64(latest["root_hash"]) != root:
        return fail("the checkpoint's fields disagree with its text")

    with open(args.export, encoding="utf-8") as f:
        lines = [json.loads(l) for l in f if l.strip()]
    header, events = lines[0], lines[1:]
    e_origin, e_size, e_root = open_checkpoint(header["checkpoint"]["text"], public_key)
    events.sort(key=lambda x: x["leaf_index"])
    leaves = [leaf_hash(x["event"]) for x in events]
    if [x["leaf_index"] for x in events] == list(range(e_size)):
        if mth(leaves) != e_root:
            return fail("the root of the exported events is not the export's checkpoint root")
    else:
        return fail("the export must hold every event of its checkpoint (export with --after 0)")

    checked = 0
    for x in rng.sample(events, min(args.samples, len(events))):
        e = x["event"]
        mine = leaf_hash(e)
        if size < x["leaf_index"] + 1:
            continue
        proof = api.get("/api/v1/audit/events/%d/proof?tree_size=%d" % (e["position"], size))
        if b64(proof["leaf_hash"]) != mine:
            return fail("position %d: the service's leaf hash is not the one computed here" % e["position"])
        if proof["leaf_index"] != x["leaf_index"]:
            return fail("position %d: another leaf index" % e["position"])
        path = [b64(p) for p in proof["audit_path"]]
        if not verify_inclusion(mine, proof["leaf_index"], size, path, root):
            return fail("position %d: the inclusion proof does not verify" % e["position"])
        checked += 1

    consistent = 0
    for _ in range(min(args.samples, max(e_size - 1, 0))):
        first = rng.randint(1, e_size)
        proof = api.get("/api/v1/audit/consistency?from=%d&to=%d" % (first, size))
        path = [b64(p) for p in proof["proof"]]
        if not verify_consistency(first, size, path, mth(leaves[:first]), root):
            return fail("the consistency proof from %d to %d does not verify" % (first, size))
        consistent += 1
    if e_size < size:
        proof = api.get("/api/v1/audit/consistency?from=%d&to=%d" % (e_size, size))
        if not verify_consistency(e_size, size, [b64(p) for p in proof["proof"]], e_root, root):
            return fail("the export's checkpoint is not consistent with the latest")
    print("OK %s: checkpoint of %d verified; %d inclusion proofs, %d consistency proofs, root of %d exported leaves"
          % (origin, size, checked, consistent, len(leaves)))
    return 0


def fail(why):
    print("FAILED: " + why)
    return 1


if __name__ == "__main__":
    sys.exit(main())
