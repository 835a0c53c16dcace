"""A broker that wants TLS and a password: the gateway connects, and the password stays secret."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from gateway.broker import Broker
from gateway.client import connect
from gateway.config import parse_config
from tests.conftest import site_dict
from tests.harness import running_site
from tests.helpers import untimed
from tests.test_service import Daemon, status_of, write_config

USER = "lockgate"
PASSWORD = "s3cret-Pa55-word-7731"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(workdir: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=lockgate test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=workdir,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=workdir,
    )
    (workdir / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
        cwd=workdir,
    )
    return workdir / "ca.crt", workdir / "server.crt", workdir / "server.key"


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[Broker]:
    if not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.skip("openssl and mosquitto_passwd are needed to build a TLS broker")
    workdir = tmp_path / "secure-broker"
    workdir.mkdir()
    ca, cert, key = make_certificates(workdir)
    passwords = workdir / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwords.chmod(0o644)  # mosquitto may drop privileges before reading it
    for path in (cert, key):
        path.chmod(0o644)
    broker = Broker(
        workdir,
        listener_options=(
            f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\npassword_file {passwords}\n"
        ),
        allow_anonymous=False,
    )
    broker.start()
    yield broker
    broker.kill()


def secure_site(broker: Broker, tmp_path: Path) -> dict[str, object]:
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORD + "\n")
    data = site_dict(broker, tmp_path)
    data["mqtt"] = {
        **data["mqtt"],
        "username": USER,
        "password_file": str(secret),
        "tls": {"ca_file": str(broker.workdir / "ca.crt")},
    }
    return data


async def test_gateway_speaks_tls_with_a_password(secure_broker: Broker, tmp_path: Path) -> None:
    config = parse_config(secure_site(secure_broker, tmp_path), base_dir=tmp_path)
    async with running_site(config) as site:
        reply = await site.api.call("access_codes/create", device_id="front_door", code="7351")
        assert reply["ok"]
        await site.settled()
        assert site.lock("front_door").slots == {1: "7351"}


async def test_wrong_password_is_refused_by_the_broker(
    secure_broker: Broker, tmp_path: Path
) -> None:
    data = secure_site(secure_broker, tmp_path)
    (tmp_path / "mqtt-password").write_text("not-it\n")
    config = parse_config(data, base_dir=tmp_path)
    with pytest.raises(aiomqtt.MqttError, match=r"(?i)not authori[sz]ed|bad user name or password"):
        async with connect(config.mqtt, config.prefix):
            pass


async def test_the_password_never_reaches_the_log(secure_broker: Broker, tmp_path: Path) -> None:
    data = secure_site(secure_broker, tmp_path)
    data["log_level"] = "info"
    config = parse_config(data, base_dir=tmp_path)
    daemon = Daemon(write_config(tmp_path / "lockgate.yaml", data), tmp_path / "daemon.log")
    try:
        async with connect(config.mqtt, config.prefix) as api:
            await daemon.started(await status_of(api, config.prefix))
            created = await api.call("access_codes/create", device_id="front_door", code="7352")
            assert created["ok"]
    finally:
        daemon.stop()
    log = daemon.log_file.read_text()
    assert "gateway.started" in log
    assert PASSWORD not in log
    assert "7352" not in untimed(log)  # PINs stay out of INFO logs too
