"""The local cluster's CA and the certificate of its AWS API endpoints (openssl).

The endpoints the VMs reach as ``https://<service>.<region>.amazonaws.com`` are bake's gateway,
which presents a certificate for ``*.<region>.amazonaws.com`` and ``*.amazonaws.com`` signed by
a CA made for this cluster (P-256 keys; 10 years for the CA, 1 year for the leaf). The CA's
certificate reaches the VMs through the NoCloud seed's vendor-data (a ``scripts-vendor`` script);
its key never leaves ``<cluster dir>/pki`` (mode 0600).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from bake.errors import EnvironmentProblem


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"openssl {args[0]} failed: {last}")


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
             str(path))
    path.chmod(0o600)


def ensure_ca(directory: Path, cluster: str) -> tuple[Path, Path]:
    """The cluster's CA ``(ca.crt, ca.key)`` under ``directory`` (made once, then reused)."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / "ca.crt", directory / "ca.key"
    if not (crt.exists() and key.exists()):
        _key(key)
        _openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "3650",
                 "-subj", f"/O=bake local cluster {cluster}/CN=bake embedded AWS CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(crt))
    return crt, key


def endpoint_certificate(directory: Path, cluster: str, region: str) -> tuple[Path, Path]:
    """``(endpoints.crt, endpoints.key)`` for the AWS API names of ``region``, including S3's
    virtual-hosted names (``<bucket>.s3.<region>.amazonaws.com``: botocore's default
    addressing for a DNS-compatible bucket name, what the etcd snapshot upload uses)."""
    ca_crt, ca_key = ensure_ca(directory, cluster)
    crt, key = directory / "endpoints.crt", directory / "endpoints.key"
    if crt.exists() and key.exists():
        return crt, key
    _key(key)
    names = [f"*.{region}.amazonaws.com", "*.amazonaws.com", f"*.{region}.api.aws",
             f"*.s3.{region}.amazonaws.com", "*.s3.amazonaws.com"]
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "e.csr", Path(tmp) / "e.cnf"
        _openssl("req", "-new", "-key", str(key), "-subj", "/CN=amazonaws.com", "-out", str(csr))
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName="
                       + ",".join(f"DNS:{n}" for n in names) + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", "365", "-sha256", "-out", str(crt),
                 "-extfile", str(ext))
    return crt, key
