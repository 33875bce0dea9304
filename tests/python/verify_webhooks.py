"""Verifies platform-webhook deliveries as receivers would: Standard
Webhooks ones with the official library (PyPI `standardwebhooks`), hookplane
ones with Python's own `hmac` (hex HMAC-SHA256 of the raw body, keyed with
the secret's bytes after `whsec_`, base64-decoded).

stdin: a JSON list of {"scheme", "secret", "body", "headers"}; stdout: a
JSON list with, for each, null when it verifies or why not.
"""

import base64
import hashlib
import hmac
import json
import sys

from standardwebhooks.webhooks import Webhook


def verify_hookplane(secret: str, body: str, headers: dict) -> None:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    given = [s.strip() for s in headers.get("x-webhook-signature", "").split(",")]
    if not any(hmac.compare_digest(expected, s) for s in given):
        raise ValueError("no signature matches")


def main() -> None:
    results = []
    for item in json.load(sys.stdin):
        try:
            if item["scheme"] == "standard_webhooks":
                Webhook(item["secret"]).verify(item["body"], item["headers"])
            else:
                verify_hookplane(item["secret"], item["body"], item["headers"])
            results.append(None)
        except Exception as error:  # noqa: BLE001 - reported to the test
            results.append(f"{type(error).__name__}: {error}")
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
