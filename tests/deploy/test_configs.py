"""The configuration files the roles write, rendered by Ansible from the roles' templates, defaults and vars
for variants the provisioning tests do not apply (HQ on PostgreSQL, extra settings merged into the sections
the roles manage), and loaded with the services' own schemas."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway import tomlconfig
from gateway.config import GatewayConfig
from hq.config import HqConfig
from tests.deploy.conftest import ANSIBLE_DIR, BIN

PLAYBOOK = Path(__file__).with_name("playbooks") / "render_configs.yml"

HQ_VARIANTS = [
    {"name": "postgresql", "database": "postgresql",
     "settings": {"ca": {"certificate_days": 90, "dir": "/somewhere/else"}, "mqtt": {"keepalive_s": 20},
                  "ingest": {"max_batch_records": 20000}}},
    {"name": "sqlite", "database": "sqlite", "settings": {}},
]
GATEWAY_VARIANTS = [
    {"name": "enrolment", "hq_url": "https://hq.example.org", "enrolment_ca_src": "/controller/hq-https-ca.pem",
     "settings": {"enrolment": {"renew_warning_days": 14}, "outbox": {"quota_bytes": 4 * 1024**3}}},
    {"name": "copied-certificate", "hq_url": "", "enrolment_ca_src": "", "settings": {}},
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rendered")
    variants = out / "variants.json"
    variants.write_text(json.dumps({"roles_dir": str(ANSIBLE_DIR / "roles"), "out_dir": str(out),
                                    "hq_variants": HQ_VARIANTS, "gateway_variants": GATEWAY_VARIANTS}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOME": str(out / "ansible"), "ANSIBLE_LOCALHOST_WARNING": "0",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "PATH": f"{BIN}:{os.environ['PATH']}"}
    done = subprocess.run([str(BIN / "ansible-playbook"), "-e", f"@{variants}", str(PLAYBOOK)], cwd=ANSIBLE_DIR,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    return {p.stem: p for p in out.glob("*.toml")}


def load(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def test_hq_on_postgresql_uses_the_local_socket_and_merges_extra_settings(rendered: dict[str, Path]) -> None:
    config = tomlconfig.load(rendered["hq-postgresql"], HqConfig)
    assert config.database.url == "postgresql+psycopg://clinic-hq@/clinic?host=/run/postgresql"
    assert not config.replication.enabled
    assert config.ca.certificate_days == 90 and config.mqtt.keepalive_s == 20  # merged into the role's sections
    assert config.ca.dir == Path("/var/lib/clinic-hq/ca")  # the role's layout wins over the inventory
    assert config.ingest.max_batch_records == 20000
    assert config.mqtt.dynamic_security and config.mqtt.port == 8883 and config.mqtt.client_id == "hq-1"
    assert config.ca.crl_path == Path("/var/lib/clinic-hq-crl/crl.pem")


def test_hq_on_sqlite_replicates_with_litestream(rendered: dict[str, Path]) -> None:
    config = tomlconfig.load(rendered["hq-sqlite"], HqConfig)
    assert config.database.url == "sqlite:////var/lib/clinic-hq/hq.db"
    assert config.replication.enabled and config.replication.mode == "external"


def test_the_gateway_enrols_at_the_hq_url_of_the_inventory(rendered: dict[str, Path]) -> None:
    config = tomlconfig.load(rendered["gateway-enrolment"], GatewayConfig)
    assert config.enrolment.hq_url == "https://hq.example.org"
    assert config.enrolment.ca_file == Path("/etc/clinic-gateway/tls/hq-https-ca.pem")
    assert config.enrolment.renew_warning_days == 14 and config.outbox.quota_bytes == 4 * 1024**3
    assert config.mqtt.cert_file == Path("/etc/clinic-gateway/tls/gateway.pem")


def test_without_an_hq_url_the_gateway_has_no_enrolment_section(rendered: dict[str, Path]) -> None:
    tomlconfig.load(rendered["gateway-copied-certificate"], GatewayConfig)
    assert "enrolment" not in load(rendered["gateway-copied-certificate"])
