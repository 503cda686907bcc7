#!/usr/bin/env python3
"""Signs a new account up through the SMS outbox and prints its session cookie (`name=value`).

usage: signin.py BASE_URL OUTBOX_PATH ROLE [NAME]
"""
import json
import random
import sys
import time
import urllib.request


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r), r.headers


def main():
    base, outbox, role = sys.argv[1], sys.argv[2], sys.argv[3]
    name = sys.argv[4] if len(sys.argv) > 4 else f"CI {role}"
    phone = "+9198%08d" % random.randrange(100_000_000)
    body, _ = post(f"{base}/auth/signup", {"phone": phone, "name": name, "role": role})
    challenge = body["data"]["id"]
    code = None
    for _ in range(50):
        try:
            with open(outbox) as f:
                for line in f:
                    msg = json.loads(line)
                    if msg["to"] == phone:
                        code = msg["body"][:6]
        except FileNotFoundError:
            pass
        if code:
            break
        time.sleep(0.1)
    if not code:
        sys.exit(f"no SMS reached the outbox for {phone}")
    _, headers = post(f"{base}/auth/signup/verify/{challenge}", {"otp": code})
    for cookie in headers.get_all("set-cookie"):
        if "auravita_session=" in cookie:
            print(cookie.split(";")[0])
            return
    sys.exit("no session cookie in the verify response")


if __name__ == "__main__":
    main()
