"""Test certificates for the ``wss://`` rows, made at run time with trustme.

One throw-away CA and one server certificate for ``127.0.0.1`` (loopback only),
written as PEM files into a temporary directory that is removed when the run
ends. Every TLS endpoint (the echo, the bridges' call legs) serves the same
certificate; every TLS client (the load generator, the bridges' remote legs)
trusts the CA.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    cafile: str
    certfile: str
    keyfile: str


def make_certs() -> Certs:
    """A fresh CA and a ``127.0.0.1`` server certificate, removed at exit."""
    import trustme  # the test extra; only the TLS rows need it

    directory = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    atexit.register(shutil.rmtree, directory, True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    certs = Certs(
        str(directory / "ca.pem"), str(directory / "cert.pem"), str(directory / "key.pem")
    )
    ca.cert_pem.write_to_path(certs.cafile)
    for i, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(certs.certfile, append=i > 0)
    leaf.private_key_pem.write_to_path(certs.keyfile)
    return certs
