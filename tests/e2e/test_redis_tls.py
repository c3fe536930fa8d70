"""Redis over TLS (``rediss://``), as a multi-host deployment runs it: a redis-server with a
throwaway certificate and a password, and a whole stack (API, workers) whose only Redis
setting is the ``rediss://`` URL. Results checked against direct Aer."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from qfleet import Client
from qiskit_aer.primitives import EstimatorV2
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from qfleet_server.bench.workloads import training_ansatz, z_observables
from qfleet_server.stack import Stack, free_port

pytestmark = pytest.mark.e2e


def throwaway_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost, valid for a day: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qfleet test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "redis.pem", directory / "redis.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths[2].chmod(0o600)
    return paths


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, Path]]:
    """(TLS port, password, CA file) of a redis-server that speaks TLS only."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    directory = tmp_path_factory.mktemp("tls")
    ca, cert, key = throwaway_certificate(directory)
    port, password = free_port(), secrets.token_urlsafe(24)
    proc = subprocess.Popen(
        [binary, "-", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)]
        + ["--tls-auth-clients", "no", "--dir", str(directory), "--loglevel", "warning"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None
    proc.stdin.write(f"requirepass {password}\n".encode())
    proc.stdin.close()
    client = Redis(port=port, password=password, ssl=True, ssl_ca_certs=str(ca))
    for _ in range(200):
        try:
            client.ping()
            break
        except RedisConnectionError:
            assert proc.poll() is None, "redis-server refused the TLS options (built without TLS?)"
            time.sleep(0.05)
    try:
        yield port, password, ca
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_plaintext_client_gets_nothing_from_the_tls_port(tls_redis: tuple[int, str, Path]) -> None:
    port, password, _ = tls_redis
    with pytest.raises(RedisConnectionError):
        Redis(port=port, password=password, socket_timeout=3).ping()


def test_a_whole_stack_runs_on_a_rediss_url(tls_redis: tuple[int, str, Path], tmp_path: Path) -> None:
    port, password, ca = tls_redis
    url = f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    assert Redis.from_url(url).ping()  # the URL alone carries TLS, the CA and the password
    with Stack(port=free_port(), workers=1, redis_url=url, device_worker=False, log_dir=tmp_path) as stack:
        circuit, obs = training_ansatz(6), z_observables(6)
        values = np.random.default_rng().uniform(0, 2 * np.pi, (40, circuit.num_parameters))
        with Client(stack.url, api_key=stack.api_key) as client:
            evs = client.estimate([(circuit, obs, values)]).result(timeout=120)[0].evs
    want = EstimatorV2().run([(circuit, obs, values)]).result()[0].data.evs
    np.testing.assert_allclose(evs, want, atol=1e-8)
