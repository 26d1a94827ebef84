"""A client-go credential (exec) plugin for tests, as EKS's and GKE's are: prints an
ExecCredential (client.authentication.k8s.io/v1) with a bearer token and an expiry; or, with
--cert-file and --key-file instead of --token-file, a client certificate and its key (PEM), as
Teleport's `tsh kube credentials` does.

    users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1,
             command: python3, args: [exec_credential.py, --token-file, F, --log, L,
             --ttl, "4", --sleep, "1"], interactiveMode: Never}}}]

The token (or certificate) is read from its file at each call (the test rotates it there);
the plugin sleeps --sleep seconds first, as a slow cloud CLI does, so a client that runs it on
its event loop stalls visibly. Each call appends one JSON line to --log: its start and end (Unix
seconds), the pid, and the token's last characters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--token-file")
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    parser.add_argument("--log", required=True)
    parser.add_argument("--ttl", type=float, default=60.0, help="seconds until expiry")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to take")
    args = parser.parse_args(argv)
    start = time.time()
    time.sleep(args.sleep)
    expiry = datetime.now(UTC) + timedelta(seconds=args.ttl)
    status: dict[str, str] = {"expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if args.token_file:
        with open(args.token_file) as f:
            status["token"] = token = f.read().strip()
    else:
        with open(args.cert_file) as f:
            status["clientCertificateData"] = token = f.read()
        with open(args.key_file) as f:
            status["clientKeyData"] = f.read()
        token = token.strip().splitlines()[-2]  # the certificate's last base64 line
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": status,
    }
    line = {"start": start, "end": time.time(), "pid": os.getpid(), "token": token[-8:],
            "exec_info": bool(os.environ.get("KUBERNETES_EXEC_INFO"))}  # fmt: skip
    with open(args.log, "a") as f:
        f.write(json.dumps(line) + "\n")
    json.dump(credential, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
