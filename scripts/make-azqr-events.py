#!/usr/bin/env python3
"""Writes events/azqr/*.json: API Gateway HTTP API (payload 2.0) events for the AZQR
webhook, usable with `sam local invoke -e`. The key is the dev key from local.env.example."""
import json, pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEV_KEY = next(l.split("=", 1)[1].strip() for l in (ROOT / "local.env.example").read_text().splitlines()
               if l.startswith("AZQR_API_KEY="))
ROUTE = "PUT /webhooks/azqr/qr/{rrn}/status"

def event(rrn, body, api_key=DEV_KEY, content_type="application/json"):
    path = f"/webhooks/azqr/qr/{rrn}/status"
    headers = {"host": "abc123.execute-api.eu-central-1.amazonaws.com", "user-agent": "AZQR-Webhook/1.0"}
    if content_type:
        headers["content-type"] = content_type
    if api_key is not None:
        headers["apikey"] = api_key
    return {
        "version": "2.0",
        "routeKey": ROUTE,
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.eu-central-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "PUT", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10",
                     "userAgent": "AZQR-Webhook/1.0"},
            "requestId": f"req-{rrn}", "routeKey": ROUTE, "stage": "$default",
            "time": "22/Nov/2026:11:00:00 +0000", "timeEpoch": 1795345200000,
        },
        "pathParameters": {"rrn": rrn},
        "body": body if isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }

EVENTS = {
    "read": event("100000000001", {"status": "read", "description": "QR code read"}),
    "paid": event("100000000002", {"status": "paid", "description": "Payment confirmed by payer"}),
    "canceled": event("100000000003", {"status": "canceled", "description": "Payer canceled"}),
    "expired": event("100000000004", {"status": "expired", "description": "QR code expired"}),
    "incompleted": event("100000000005", {"status": "incompleted", "description": "AM04 InsufficientFunds"}),
    "completed": event("100000000006", {"status": "completed", "description": "Payment completed"}),
    "bad-wrong-key": event("100000000007", {"status": "completed"}, api_key="not-the-right-key"),
    "bad-missing-key": event("100000000008", {"status": "completed"}, api_key=None),
    "bad-rrn": event("12345", {"status": "completed"}),
    "bad-unknown-status": event("100000000009", {"status": "refunded"}),
    "bad-malformed-json": event("100000000010", '{"status": "completed"'),
}

out = ROOT / "events" / "azqr"
out.mkdir(parents=True, exist_ok=True)
for name, ev in EVENTS.items():
    (out / f"{name}.json").write_text(json.dumps(ev, indent=2) + "\n")
print(f"wrote {len(EVENTS)} events to {out.relative_to(ROOT)}")
