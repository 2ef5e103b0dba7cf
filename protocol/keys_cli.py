"""`lorascope keys DIR`: make CurveZMQ keypairs so a trainer can listen beyond loopback safely."""

from __future__ import annotations

import argparse

from .security import generate_keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="directory to create the server and client keypairs in")


def run(args: argparse.Namespace) -> int:
    root = generate_keys(args.dir)
    print(f"wrote CurveZMQ keys to {root}/")
    print(f"  trainer:  lorascope train --pub tcp://0.0.0.0:5555 --control tcp://0.0.0.0:5556 --curve-dir {root}")
    print(f"  watcher:  copy {root}/client.key, {root}/client.key_secret and {root}/server.key to the watching")
    print("            machine, into one directory, and pass it as --curve-dir there (watch, control, edit)")
    print(f"  more watchers: put their client.key files into {root}/authorized/")
    return 0
