#!/usr/bin/env python3
"""Verify a mistral-tap webhook (Standard Webhooks v1 signature), stdlib only.

Usage in a receiver (e.g. Flask):

    from verify import verify
    ok = verify(["whsec_..."], request.headers["webhook-id"],
                request.headers["webhook-timestamp"], request.get_data(),
                request.headers["webhook-signature"])

Secrets starting with "whsec_" are base64-decoded after the prefix; any other
secret is used as raw UTF-8 bytes, exactly as mistral-tap does.

As a command (used by mistral-tap's tests), with the body on stdin:

    python3 verify.py --secret S [--secret S2] --id ID --timestamp TS \
        --signature "v1,..." [--now UNIX] < body
exits 0 when valid and 1 otherwise.
"""
import argparse
import base64
import hashlib
import hmac
import sys
import time


def key(secret):
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode("utf-8")


def verify(secrets, msg_id, timestamp, body, signature, tolerance=300, now=None):
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        return False
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    for part in signature.split():
        version, _, sig = part.partition(",")
        if version != "v1":
            continue
        for s in secrets:
            want = base64.b64encode(hmac.new(key(s), signed, hashlib.sha256).digest()).decode()
            if hmac.compare_digest(want, sig):
                return True
    return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--secret", action="append", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--timestamp", required=True)
    p.add_argument("--signature", required=True)
    p.add_argument("--now", type=float)
    a = p.parse_args()
    body = sys.stdin.buffer.read()
    if verify(a.secret, a.id, a.timestamp, body, a.signature, now=a.now):
        print("valid")
        return 0
    print("invalid")
    return 1


if __name__ == "__main__":
    sys.exit(main())
