"""Signs trigger calls the way each sender signs its webhooks.

Stripe, Slack and Standard Webhooks sign with their own libraries from
PyPI (pinned in requirements.txt). GitHub and Shopify publish no signing
library; their signatures are computed here as their documentation
describes, independently of hookplane's code.

Reads a JSON list of requests on stdin, each
  {"preset", "secrets": [..], "timestamp": <unix>, "body": "<text>", "id": "<delivery id>"}
and writes a JSON list of header maps, one per request. Several secrets
sign the way a sender does while it rolls its secret: one signature each.
"""

import base64
import datetime
import hashlib
import hmac
import json
import sys

import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook


def sign(request):
    preset = request["preset"]
    secrets = request["secrets"]
    timestamp = request["timestamp"]
    body = request["body"]
    delivery = request.get("id", "")
    if preset == "stripe":
        # `t=<ts>,v1=<hex>`; while rolling, Stripe adds a `v1` per secret.
        headers = [
            stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
            for secret in secrets
        ]
        value = headers[0] + "".join("," + h.split(",", 1)[1] for h in headers[1:])
        return {"Stripe-Signature": value}
    if preset == "slack":
        verifier = SignatureVerifier(signing_secret=secrets[0])
        return {
            "X-Slack-Signature": verifier.generate_signature(timestamp=str(timestamp), body=body),
            "X-Slack-Request-Timestamp": str(timestamp),
        }
    if preset == "standard_webhooks":
        moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
        signatures = " ".join(Webhook(secret).sign(delivery, moment, body) for secret in secrets)
        return {"webhook-id": delivery, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}
    if preset == "github":
        # docs.github.com, "Validating webhook deliveries": the hex HMAC-SHA256
        # of the payload under the secret, prefixed `sha256=`.
        digest = hmac.new(secrets[0].encode(), body.encode(), hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": "sha256=" + digest}
        if delivery:
            headers["X-GitHub-Delivery"] = delivery
        return headers
    if preset == "shopify":
        # shopify.dev, "Verify webhooks": the base64 HMAC-SHA256 of the raw body.
        digest = hmac.new(secrets[0].encode(), body.encode(), hashlib.sha256).digest()
        headers = {"X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode()}
        if delivery:
            headers["X-Shopify-Webhook-Id"] = delivery
        return headers
    raise ValueError(f"unknown preset {preset!r}")


if __name__ == "__main__":
    json.dump([sign(request) for request in json.load(sys.stdin)], sys.stdout)
