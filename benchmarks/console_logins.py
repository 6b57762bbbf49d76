"""Peak memory of ``cellpilot serve`` while N wrong logins arrive at once (issue 10, item 4).

    .venv/bin/python benchmarks/console_logins.py [--logins 8] [--root DIR]

Starts ``cellpilot serve`` (production argon2 cost: 64 MiB per hash) on a fresh ledger with one
account, sends N concurrent wrong logins (half to the account, half to unknown names, each from
its own login form), and prints the server's resident memory before and its peak (VmHWM)
after. ``--root`` runs another checkout's code (to compare with an older version). Linux only
(reads /proc).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mib(pid: int, field: str) -> int:
    return (
        int(re.search(rf"{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
        // 1024
    )


def _wrong_login(base: str, i: int) -> None:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    page = opener.open(base + "/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {
        "username": "ana" if i % 2 else f"guess{i}",
        "password": f"wrong-{i}",
        "csrf_token": token,
        "next": "/",
    }
    opener.open(base + "/login", data=urllib.parse.urlencode(form).encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logins", type=int, default=8)
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose code runs the server")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cellpilot-logins-"))
    url = f"sqlite:///{tmp / 'ledger.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CELLPILOT_LEDGER_KEY": str(tmp / "ledger.key")}
    cli = [sys.executable, "-m", "controller.cli"]
    subprocess.run(
        [*cli, "users", "add", "ana", "--role", "operator", "--password-stdin", "--ledger", url],
        input="ana-password\n",
        text=True,
        cwd=args.root,
        env=env,
        check=True,
        capture_output=True,
    )
    port = _free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--ledger", url],
        cwd=args.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/login", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        before = _mib(server.pid, "VmRSS")
        started = time.monotonic()
        threads = [
            threading.Thread(target=_wrong_login, args=(base, i)) for i in range(args.logins)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(
            f"{args.root}: {args.logins} concurrent wrong logins in {time.monotonic() - started:.1f} s; "
            f"server memory before {before} MiB, peak {_mib(server.pid, 'VmHWM')} MiB"
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
