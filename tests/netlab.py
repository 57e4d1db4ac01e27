"""A speaker's network of its own, made of Linux network namespaces, and a real coturn.

The speaker is in a namespace behind a NAT router (another namespace, iptables
MASQUERADE), which reaches this machine's own namespace (the "internet": the Podium
server and the TURN server) over a veth pair. The router can block UDP altogether, as the
strictest networks do, so that the only way to the media is TCP or TLS through TURN::

    speaker 10.231.1.2 --- 10.231.1.1 router 10.231.2.2 --- 10.231.2.1 (server, TURN)

Needs root (CAP_NET_ADMIN), ``ip`` and Debian's ``iptables`` and ``coturn``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import Server
from media_signal import decode
from services import terminate

SERVER_IP = "10.231.2.1"
ROUTER_OUT_IP = "10.231.2.2"
ROUTER_IN_IP = "10.231.1.1"
SPEAKER_IP = "10.231.1.2"


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    subprocess.run(command, check=True, capture_output=True, text=True)


def _in(netns: str, *command: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *command], check=True, capture_output=True)


class NatNetwork:
    """The speaker's namespace behind a NAT router; :meth:`run` starts a command in it."""

    def __init__(self, *, block_udp: bool) -> None:
        tag = f"{os.getpid() % 100000}"
        self.speaker, self.router = f"pspk{tag}", f"prtr{tag}"
        self._outside = f"pvo{tag}"  # this namespace's end of the router's uplink
        _ip("netns", "add", self.speaker)
        try:
            _ip("netns", "add", self.router)
            _ip("link", "add", self._outside, "type", "veth", "peer", "name", "up0")
            _ip("link", "set", "up0", "netns", self.router)
            _ip("addr", "add", f"{SERVER_IP}/24", "dev", self._outside)
            _ip("link", "set", self._outside, "up")
            _ip("link", "add", "lan0", "type", "veth", "peer", "name", "eth0", netns=self.router)
            _ip("link", "set", "eth0", "netns", self.speaker, netns=self.router)
            _ip("addr", "add", f"{ROUTER_OUT_IP}/24", "dev", "up0", netns=self.router)
            _ip("addr", "add", f"{ROUTER_IN_IP}/24", "dev", "lan0", netns=self.router)
            for netns, dev in ((self.router, "up0"), (self.router, "lan0"), (self.router, "lo")):
                _ip("link", "set", dev, "up", netns=netns)
            _ip("route", "add", "default", "via", SERVER_IP, netns=self.router)
            _ip("addr", "add", f"{SPEAKER_IP}/24", "dev", "eth0", netns=self.speaker)
            _ip("link", "set", "eth0", "up", netns=self.speaker)
            _ip("link", "set", "lo", "up", netns=self.speaker)
            _ip("route", "add", "default", "via", ROUTER_IN_IP, netns=self.speaker)
            _in(self.router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
            _in(self.router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "up0",
                "-j", "MASQUERADE")  # fmt: skip
            self.block_udp(block_udp)
        except BaseException:
            self.close()
            raise

    def block_udp(self, blocked: bool) -> None:
        """Let UDP through the router, or drop every UDP packet (TCP still passes)."""
        _in(self.router, "iptables", "-F", "FORWARD")
        if blocked:
            _in(self.router, "iptables", "-A", "FORWARD", "-p", "udp", "-j", "DROP")

    def lose(self, probability: float) -> None:
        """Lose this share of the speaker's UDP packets on the way out, at random (and
        none once it is 0). iptables' statistic match: this kernel may have no netem."""
        _in(self.router, "iptables", "-F", "FORWARD")
        if probability > 0:
            _in(self.router, "iptables", "-A", "FORWARD", "-i", "lan0", "-p", "udp", "-m",
                "statistic", "--mode", "random", "--probability", f"{probability:.4f}",
                "-j", "DROP")  # fmt: skip

    def cut(self, cut: bool) -> None:
        """Cut the speaker's link (nothing passes, either way), or mend it."""
        if cut:
            _in(self.router, "iptables", "-I", "FORWARD", "1", "-j", "DROP")
        else:
            _in(self.router, "iptables", "-D", "FORWARD", "-j", "DROP")

    def command(self, *command: str) -> list[str]:
        """``command`` as run in the speaker's namespace."""
        return ["ip", "netns", "exec", self.speaker, *command]

    def close(self) -> None:
        for netns in (self.speaker, self.router):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self._outside], capture_output=True, check=False)


PUBLIC_IP = "10.233.0.50"  # what the world reaches the server at
PRIVATE_IP = "10.234.0.2"  # the only address the server has


class OneToOneNat:
    """A server's namespace behind 1:1 NAT, as a cloud VM is: it has a private address
    only, and a gateway maps a public address to it, every port the same (DNAT in,
    SNAT out)::

        here 10.233.0.1 --- 10.233.0.2, 10.233.0.50 gateway 10.234.0.1 --- 10.234.0.2 server

    This namespace has no route to the private network: only the public address reaches
    the server.
    """

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.server, self.gateway = f"psrv{tag}", f"pgw{tag}"
        self._outside = f"pgo{tag}"
        _ip("netns", "add", self.server)
        try:
            _ip("netns", "add", self.gateway)
            _ip("link", "add", self._outside, "type", "veth", "peer", "name", "wan0")
            _ip("link", "set", "wan0", "netns", self.gateway)
            _ip("addr", "add", "10.233.0.1/24", "dev", self._outside)
            _ip("link", "set", self._outside, "up")
            _ip("link", "add", "lan0", "type", "veth", "peer", "name", "eth0", netns=self.gateway)
            _ip("link", "set", "eth0", "netns", self.server, netns=self.gateway)
            _ip("addr", "add", "10.233.0.2/24", "dev", "wan0", netns=self.gateway)
            _ip("addr", "add", f"{PUBLIC_IP}/24", "dev", "wan0", netns=self.gateway)
            _ip("addr", "add", "10.234.0.1/24", "dev", "lan0", netns=self.gateway)
            for dev in ("wan0", "lan0", "lo"):
                _ip("link", "set", dev, "up", netns=self.gateway)
            _ip("addr", "add", f"{PRIVATE_IP}/24", "dev", "eth0", netns=self.server)
            _ip("link", "set", "eth0", "up", netns=self.server)
            _ip("link", "set", "lo", "up", netns=self.server)
            _ip("route", "add", "default", "via", "10.234.0.1", netns=self.server)
            _ip("route", "add", "default", "via", "10.233.0.1", netns=self.gateway)
            _in(self.gateway, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
            # A speaker's own network lets in no UDP it did not ask for (any NAT): the
            # server's checks reach a speaker only as answers to the speaker's, on a path
            # the speaker's checks opened. Made here, for a speaker in this namespace.
            _in(self.gateway, "iptables", "-A", "FORWARD", "-i", "lan0", "-p", "udp", "-m",
                "conntrack", "--ctstate", "NEW", "-j", "DROP")  # fmt: skip
            nat = ["iptables", "-t", "nat", "-A"]
            _in(self.gateway, *nat, "PREROUTING", "-d", PUBLIC_IP, "-j", "DNAT",
                "--to-destination", PRIVATE_IP)  # fmt: skip
            _in(self.gateway, *nat, "POSTROUTING", "-s", PRIVATE_IP, "-j", "SNAT",
                "--to-source", PUBLIC_IP)  # fmt: skip
        except BaseException:
            self.close()
            raise

    def command(self, *command: str) -> list[str]:
        """``command`` as run in the server's namespace."""
        return ["ip", "netns", "exec", self.server, *command]

    def close(self) -> None:
        for netns in (self.server, self.gateway):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self._outside], capture_output=True, check=False)


def can_make_namespaces() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "turnserver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install --test)"
    probe = f"pprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    masquerade = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE"]
    try:
        nat = subprocess.run(
            ["ip", "netns", "exec", probe, *masquerade], capture_output=True, text=True
        )
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    if nat.returncode != 0:
        return f"this kernel offers no NAT to iptables: {nat.stderr.strip()}"
    return None


def certificate_for(address: str, directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for ``address`` (an IP SAN): the CA's file (for
    SSL_CERT_FILE), the certificate's and its key's."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Podium test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Coturn:
    """Debian's coturn on ``address``, with the shared-secret scheme Podium mints TURN
    credentials for (``use-auth-secret``), TURN over UDP and TCP on :attr:`port` and over
    TLS on :attr:`tls_port`. Its log (verbose) is :meth:`log`."""

    def __init__(self, address: str, secret: str, port: int, tls_port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="podium-coturn-"))
        self.address, self.port, self.tls_port = address, port, tls_port
        self.ca, cert, key = certificate_for(address, self.root)
        self._log = self.root / "turn.log"
        self.process = subprocess.Popen(
            [
                "turnserver",
                "-n",  # no configuration file: everything is here
                "--verbose",
                f"--log-file={self._log}",
                "--simple-log",
                "--no-stdout-log",
                f"--listening-ip={address}",
                f"--relay-ip={address}",
                f"--listening-port={port}",
                f"--tls-listening-port={tls_port}",
                "--min-port=50000",
                "--max-port=50999",
                "--use-auth-secret",
                f"--static-auth-secret={secret}",
                "--realm=podium.test",
                f"--cert={cert}",
                f"--pkey={key}",
                f"--userdb={self.root / 'turndb'}",
                f"--pidfile={self.root / 'turn.pid'}",
                "--no-cli",
                "--no-dtls",
                "--fingerprint",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while "Total General servers" not in self.log() and "listener opened" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("turnserver did not start:\n" + self.log())
            time.sleep(0.1)
        time.sleep(0.5)  # its listeners open one after another

    def log(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        terminate(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


def end_and_replay(server: Server, space_id: str, token: str) -> npt.NDArray[np.float64]:
    """End the space (as its host, ``token``) and decode its replay once it is there."""
    with server.client(token) as api:
        assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
    replay = f"{server.url}/hls/{space_id}/replay.m4a"
    deadline = time.monotonic() + 30
    while httpx.get(replay, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "no replay"
        time.sleep(0.3)
    return decode(replay)
