"""A SigV4-checking reverse proxy for sidelog's tests (127.0.0.1 only).

Every request is verified with botocore's SigV4 implementation (an
implementation independent of the AWS SDK for Go the agent signs with):
the signature is recomputed from the method, path, query, the headers the
client says it signed, the body as received and the X-Amz-Date timestamp,
with the secret key of the access key id the request names. Any mismatch,
an unknown or expired access key, a wrong session token, region or service,
a payload hash that is not the body's, or a timestamp more than 5 minutes
off is answered 403 (as AWS does) and never forwarded. A verified request
is forwarded to the upstream (the tests' Elasticsearch stand-in) and its
answer relayed.

Control (unsigned, local): POST /__sigv4check/keys {"AKID": {"secret": ...,
"token": ..., "expires": <unix seconds or 0>}}; GET /__sigv4check/log.

Usage: python3 sigv4check.py <upstream base URL> <region> <service>
Prints "LISTENING <port>" once ready.
"""

import datetime
import hashlib
import hmac
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

UPSTREAM, REGION, SERVICE = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
LOCK = threading.Lock()
KEYS = {}
LOG = []  # one entry per request: verdict, reason, access key, path

AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;\-]+), Signature=([0-9a-f]{64})$")


class Refused(Exception):
    pass


def verify(method, path, headers, body):
    auth = headers.get("Authorization", "")
    m = AUTH_RE.match(auth)
    if not m:
        raise Refused("missing or malformed Authorization header")
    akid, day, region, service, signed, signature = m.groups()
    if region != REGION or service != SERVICE:
        raise Refused("credential scope %s/%s, want %s/%s" % (region, service, REGION, SERVICE))
    with LOCK:
        key = KEYS.get(akid)
    if key is None:
        raise Refused("unknown access key " + akid)
    if key.get("expires") and time.time() >= key["expires"]:
        raise Refused("expired access key " + akid)
    amzdate = headers.get("X-Amz-Date", "")
    try:
        ts = datetime.datetime.strptime(amzdate, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise Refused("bad X-Amz-Date " + repr(amzdate))
    if abs((datetime.datetime.now(datetime.timezone.utc) - ts).total_seconds()) > 300:
        raise Refused("X-Amz-Date more than 5 minutes off")
    if amzdate[:8] != day:
        raise Refused("credential scope date is not X-Amz-Date's")
    names = signed.split(";")
    for required in ("host", "x-amz-date"):
        if required not in names:
            raise Refused(required + " not signed")
    token = key.get("token") or None
    if token is not None:
        if headers.get("X-Amz-Security-Token") != token:
            raise Refused("wrong or missing session token")
        if "x-amz-security-token" not in names:
            raise Refused("session token not signed")
    body_hash = hashlib.sha256(body).hexdigest()
    sent_hash = headers.get("X-Amz-Content-Sha256")
    if SERVICE == "aoss" and sent_hash is None:
        raise Refused("x-amz-content-sha256 is required by aoss")
    if sent_hash is not None and sent_hash != body_hash:
        raise Refused("x-amz-content-sha256 is not the body's hash")
    signed_headers = {}
    for n in names:
        v = headers.get_all(n)
        if v is None:
            raise Refused("signed header %s not sent" % n)
        signed_headers[n] = ",".join(v)
    req = AWSRequest(method=method, url="http://" + headers["Host"] + path, headers=signed_headers, data=body)
    req.context["timestamp"] = amzdate
    signer = SigV4Auth(Credentials(akid, key["secret"], token), SERVICE, REGION)
    if signer.signed_headers(signer.headers_to_sign(req)) != signed:
        raise Refused("signed header list differs: %s vs %s" % (signer.signed_headers(signer.headers_to_sign(req)), signed))
    canonical = signer.canonical_request(req)
    want = signer.signature(signer.string_to_sign(req, canonical), req)
    if not hmac.compare_digest(want, signature):
        raise Refused("The request signature we calculated does not match the signature you provided")
    return akid


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/__sigv4check/"):
            return self.control(body)
        try:
            akid = verify(self.command, self.path, self.headers, body)
        except Refused as e:
            with LOCK:
                LOG.append({"ok": False, "reason": str(e), "method": self.command, "path": self.path})
            return self.reply(403, json.dumps({"message": str(e)}).encode())
        with LOCK:
            LOG.append({"ok": True, "akid": akid, "method": self.command, "path": self.path, "bytes": len(body)})
        fwd = urllib.request.Request(UPSTREAM + self.path, data=body if body else None, method=self.command)
        for h in ("Content-Type", "Content-Encoding", "Accept"):
            if self.headers.get(h):
                fwd.add_header(h, self.headers[h])
        try:
            with urllib.request.urlopen(fwd, timeout=30) as resp:
                status, rbody, rh = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            status, rbody, rh = e.code, e.read(), e.headers
        extra = {}
        for h in ("X-Elastic-Product", "Retry-After"):
            if rh.get(h):
                extra[h] = rh[h]
        self.reply(status, rbody, rh.get("Content-Type", "application/json"), extra)

    def control(self, body):
        if self.path == "/__sigv4check/keys" and self.command == "POST":
            with LOCK:
                KEYS.update(json.loads(body))
            return self.reply(200, b"{}")
        if self.path == "/__sigv4check/log":
            with LOCK:
                out = json.dumps({"botocore": botocore.__version__, "requests": LOG}).encode()
            return self.reply(200, out)
        return self.reply(404, b"{}")

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("LISTENING %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
