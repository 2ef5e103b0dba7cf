"""Who may talk to a trainer: loopback by default, CurveZMQ keys for anything else.

Nobody on the network may pause a run or inject an edit, so binding to a
non-loopback address needs either a key directory (`--curve-dir DIR`) or an
explicit `--insecure`, which prints a loud warning.

A key directory, as `lorascope keys DIR` writes it:

    DIR/server.key, DIR/server.key_secret   the trainer's keypair
    DIR/client.key, DIR/client.key_secret   a watcher's keypair
    DIR/authorized/*.key                    public keys of watchers allowed in

The trainer needs server.key_secret and authorized/; a watcher needs
client.key_secret and server.key (copy those three files to the laptop).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import threading

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from .endpoints import is_loopback
from .errors import UserError

_auth_lock = threading.Lock()
# One ZAP authenticator per context (it binds a fixed inproc address), shared by refcount.
_authenticators: dict[int, tuple[ThreadAuthenticator, int]] = {}


def check_bind(endpoint: str, curve_dir: str | os.PathLike | None, insecure: bool) -> None:
    """Refuse an unprotected non-loopback bind; warn loudly when the user opted out."""
    if is_loopback(endpoint) or curve_dir is not None:
        return
    if insecure:
        print(
            f"WARNING: lorascope binds {endpoint} WITHOUT encryption or authentication (--insecure): "
            "anyone who can reach this address can watch the run, pause it, stop it or inject edits.",
            file=sys.stderr,
        )
        return
    raise UserError(
        f"refusing to bind {endpoint} without CurveZMQ keys: anyone on the network could control the run "
        "(create keys with `lorascope keys DIR` and pass --curve-dir DIR, or pass --insecure)"
    )


def _key_file(curve_dir: str | os.PathLike, name: str) -> pathlib.Path:
    path = pathlib.Path(curve_dir) / name
    if not path.is_file():
        raise UserError(f"{path}: missing CurveZMQ key file (create keys with `lorascope keys {curve_dir}`)")
    return path


def secure_server(sock: zmq.Socket, curve_dir: str | os.PathLike) -> None:
    """Make `sock` a CurveZMQ server that admits only the keys in DIR/authorized. Call before bind."""
    public, secret = zmq.auth.load_certificate(_key_file(curve_dir, "server.key_secret"))
    authorized = pathlib.Path(curve_dir) / "authorized"
    if not authorized.is_dir():
        raise UserError(f"{authorized}: missing directory of authorized client keys")
    ctx = sock.context
    with _auth_lock:
        auth, users = _authenticators.get(id(ctx), (None, 0))
        if auth is None:
            auth = ThreadAuthenticator(ctx)
            auth.start()
            auth.configure_curve(domain="*", location=str(authorized))
        _authenticators[id(ctx)] = (auth, users + 1)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def release_server(sock_context: zmq.Context) -> None:
    """Drop one user of the context's authenticator; stop it with the last."""
    with _auth_lock:
        auth, users = _authenticators.get(id(sock_context), (None, 0))
        if auth is None:
            return
        if users <= 1:
            del _authenticators[id(sock_context)]
            auth.stop()
        else:
            _authenticators[id(sock_context)] = (auth, users - 1)


def secure_client(sock: zmq.Socket, curve_dir: str | os.PathLike) -> None:
    """Make `sock` a CurveZMQ client with DIR/client.key_secret, trusting DIR/server.key. Call before connect."""
    public, secret = zmq.auth.load_certificate(_key_file(curve_dir, "client.key_secret"))
    server_public, _ = zmq.auth.load_certificate(_key_file(curve_dir, "server.key"))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public


def generate_keys(curve_dir: str | os.PathLike) -> pathlib.Path:
    """Write a server and a client keypair and authorize the client; refuses to overwrite keys."""
    root = pathlib.Path(curve_dir)
    for name in ("server.key_secret", "client.key_secret"):
        if (root / name).exists():
            raise UserError(f"{root / name}: keys already exist; refusing to overwrite them")
    authorized = root / "authorized"
    authorized.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    zmq.auth.create_certificates(root, "server")
    zmq.auth.create_certificates(root, "client")
    shutil.copy(root / "client.key", authorized / "client.key")
    for secret in root.glob("*.key_secret"):
        os.chmod(secret, 0o600)
    return root
