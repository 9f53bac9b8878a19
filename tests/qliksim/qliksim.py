#!/usr/bin/env python3
"""qliksim: a simulated Qlik Sense Enterprise (QRS API) + Qlik Cloud tenant.

Usage:
  python3 tests/qliksim/qliksim.py --site FILE [--qrs-port 0] [--cloud-port 0]
      [--cloud-tls] [--certs DIR] [--faults FILE_OR_JSON] [--data-dir DIR]
      [--info-file PATH] [--verbose]

Prints one JSON line (URLs, API key, certificate paths, pid) once both listeners
accept connections, then serves until SIGTERM/SIGINT. See README.md.
"""
import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import core  # noqa: E402
import engine  # noqa: E402
from cloud import Cloud  # noqa: E402
from nprinting import NPrinting  # noqa: E402
from qrs import QRS  # noqa: E402

# in this order: the NPrinting half binds its connections to the QRS half's apps
HALVES = {"qrs": QRS, "cloud": Cloud, "nprinting": NPrinting}


def load_json_arg(value):
    """A JSON document given inline or as a file path."""
    if value is None:
        return None
    text = value.strip()
    if not text.startswith("{"):
        with open(value, encoding="utf-8") as fh:
            text = fh.read()
    return json.loads(text)


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Qlik QRS + Qlik Cloud simulator")
    p.add_argument("--site", required=True, help="site description JSON file")
    p.add_argument("--qrs-port", type=int, default=0)
    p.add_argument("--cloud-port", type=int, default=0)
    p.add_argument("--nprinting-port", type=int, default=0, help="served when the site has 'nprinting'")
    p.add_argument("--cloud-tls", action="store_true", help="serve the Cloud API over HTTPS")
    p.add_argument("--certs", help="certificate folder (created/filled if needed)")
    p.add_argument("--faults", help="faults JSON, inline or a file path")
    p.add_argument("--data-dir", help="folder for uploaded files (default: a temp dir)")
    p.add_argument("--info-file", help="also write the start-up JSON line here")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with open(args.site, encoding="utf-8") as fh:
        site = json.load(fh)
    running = core.start(site, HALVES, qrs_port=args.qrs_port, cloud_port=args.cloud_port,
                         cloud_tls=args.cloud_tls, certs_dir=args.certs,
                         faults=load_json_arg(args.faults), data_dir=args.data_dir,
                         verbose=args.verbose, nprinting_port=args.nprinting_port)
    engine.install(running)  # the engine API (WebSocket) on both listeners: engine.py
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    line = json.dumps(running.info)
    if args.info_file:
        write_atomic(args.info_file, line + "\n")
    print(line, flush=True)
    stop.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
