"""The [replication] settings and the Litestream configuration rendered from them: pure, no litestream run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gateway import tomlconfig
from gateway.config import GatewayConfig
from gateway.replication import (
    ReplicationError,
    ReplicationSection,
    child_environment,
    litestream_config,
    litestream_settings,
    parse_log_line,
    replica_for,
)
from hq.config import HqConfig


def settings(text: str) -> dict[str, object]:
    """The rendered file is a YAML comment line and then JSON (which YAML reads as it is)."""
    comment, body = text.split("\n", 1)
    assert comment.startswith("#")
    return dict(json.loads(body))


def test_default_is_a_file_replica_beside_the_database() -> None:
    text = litestream_config(Path("/var/lib/clinic-gateway/outbox.db"), ReplicationSection())
    assert settings(text) == {
        "logging": {"level": "info", "type": "text", "stderr": False},
        "dbs": [{"path": "/var/lib/clinic-gateway/outbox.db",
                 "replica": {"type": "file", "path": "/var/lib/clinic-gateway/replica/outbox.db",
                             "sync-interval": "1000ms"}}],
    }


def test_file_url_and_sync_interval() -> None:
    section = ReplicationSection(replica_url="file:///mnt/backup/hq/", sync_interval_s=0.25)
    replica = settings(litestream_config(Path("/srv/hq.db"), section))["dbs"][0]["replica"]
    assert replica == {"type": "file", "path": "/mnt/backup/hq", "sync-interval": "250ms"}
    assert replica_for(Path("/srv/hq.db"), section).url == "file:///mnt/backup/hq"


def test_s3_with_an_endpoint_and_region_carries_no_credentials(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("AKIAEXAMPLE\n")
    (tmp_path / "secret").write_text("s3cr3t/value\n")
    section = ReplicationSection(replica_url="s3://clinic-backups/north/gw-1", s3_endpoint="http://minio.lan:9000",
                                 s3_region="eu-central-1", access_key_id_file=tmp_path / "id",
                                 secret_access_key_file=tmp_path / "secret")
    text = litestream_config(Path("/data/outbox.db"), section)
    assert settings(text)["dbs"] == [{"path": "/data/outbox.db", "replica": {
        "type": "s3", "bucket": "clinic-backups", "endpoint": "http://minio.lan:9000", "region": "eu-central-1",
        "path": "north/gw-1", "sync-interval": "1000ms"}}]
    assert "AKIA" not in text and "s3cr3t" not in text
    env = child_environment(section, {"PATH": "/usr/bin", "LOG_LEVEL": "debug"})
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE" and env["AWS_SECRET_ACCESS_KEY"] == "s3cr3t/value"
    assert "LOG_LEVEL" not in env and env["PATH"] == "/usr/bin"


def test_aws_s3_without_files_uses_the_environments_credentials() -> None:
    section = ReplicationSection(replica_url="s3://bucket-1/hq")
    replica = litestream_settings(Path("/srv/hq.db"), section)["dbs"][0]["replica"]
    assert replica == {"type": "s3", "bucket": "bucket-1", "path": "hq", "sync-interval": "1000ms"}
    env = child_environment(section, {"AWS_ACCESS_KEY_ID": "from-role"})
    assert env["AWS_ACCESS_KEY_ID"] == "from-role"


def test_aws_ca_bundle_becomes_ssl_cert_file() -> None:
    # Litestream 0.5's S3 client refuses to start with AWS_CA_BUNDLE set; Go reads SSL_CERT_FILE instead.
    env = child_environment(ReplicationSection(), {"AWS_CA_BUNDLE": "/etc/ca.pem"})
    assert "AWS_CA_BUNDLE" not in env and env["SSL_CERT_FILE"] == "/etc/ca.pem"
    env = child_environment(ReplicationSection(), {"AWS_CA_BUNDLE": "/a.pem", "SSL_CERT_FILE": "/b.pem"})
    assert env["SSL_CERT_FILE"] == "/b.pem"


def test_unreadable_credentials_file_names_the_key(tmp_path: Path) -> None:
    section = ReplicationSection(replica_url="s3://bucket-1/x", access_key_id_file=tmp_path / "absent",
                                 secret_access_key_file=tmp_path / "absent2")
    with pytest.raises(ReplicationError, match=r"replication\.access_key_id_file"):
        child_environment(section, {})


def test_paths_are_quoted_exactly() -> None:
    db = Path('/data/clinic "north"/$HOME/outbox.db')
    assert settings(litestream_config(db, ReplicationSection()))["dbs"][0]["path"] == str(db)


def test_a_file_replica_must_not_be_the_database_or_hold_it() -> None:
    for url in ("file:///data/outbox.db", "file:///data"):
        with pytest.raises(ReplicationError, match="would overwrite the database"):
            replica_for(Path("/data/outbox.db"), ReplicationSection(replica_url=url))


@pytest.mark.parametrize(("table", "needle"), [
    ('replica_url = "/mnt/backup"', "replica_url '/mnt/backup': expected 'file:///ABSOLUTE/PATH' or 's3://BUCKET/PATH'"),
    ('replica_url = "file://relative/dir"', "expected 'file:///ABSOLUTE/PATH'"),
    ('replica_url = "file:///"', "expected 'file:///ABSOLUTE/PATH'"),
    ('replica_url = "s3://Bad_Bucket/x"', "'Bad_Bucket' is not an S3 bucket name"),
    ('replica_url = "s3://bucket-1"', "with a PATH, so two databases never share a replica"),
    ('replica_url = "s3://bucket-1/x?endpoint=http://m:9000"', "S3 settings go in s3_endpoint and s3_region"),
    ('replica_url = "gs://bucket-1/x"', "expected 'file:///ABSOLUTE/PATH' or 's3://BUCKET/PATH'"),
    ('s3_endpoint = "http://minio:9000"', "s3_endpoint is only used with an 's3://BUCKET/PATH' replica_url"),
    ('replica_url = "s3://bucket-1/x"\ns3_endpoint = "minio:9000"', "s3_endpoint 'minio:9000': expected 'http(s)://HOST[:PORT]'"),
    ('replica_url = "s3://bucket-1/x"\ns3_region = "EU Central"', "s3_region 'EU Central': expected a region name"),
    ('replica_url = "s3://bucket-1/x"\naccess_key_id_file = "/k"', "must be set together"),
    ("sync_interval_s = 0", "sync_interval_s 0.0 must be 0.1-3600 (seconds)"),
    ('enabled = "yes"', "key 'replication.enabled' = 'yes': expected true or false"),
    ("bucket = 'x'", "unknown key 'replication.bucket'"),
])
def test_invalid_settings_name_the_key_and_what_was_expected(table: str, needle: str) -> None:
    for schema in (GatewayConfig, HqConfig):
        with pytest.raises(tomlconfig.ConfigError) as err:
            tomlconfig.loads(f"[replication]\n{table}\n", schema, "svc.toml")
        assert needle in str(err.value), str(err.value)
        assert str(err.value).startswith("svc.toml:")


def test_both_services_read_the_same_section() -> None:
    text = '[replication]\nreplica_url = "s3://clinic-backups/hq"\ns3_region = "us-east-1"\nsync_interval_s = 5\n'
    hq = tomlconfig.loads(text, HqConfig).replication
    gw = tomlconfig.loads(text, GatewayConfig).replication
    assert hq == gw == ReplicationSection(replica_url="s3://clinic-backups/hq", s3_region="us-east-1",
                                          sync_interval_s=5.0)
    assert tomlconfig.loads("", GatewayConfig).replication == ReplicationSection(enabled=True)


@pytest.mark.parametrize(("line", "level", "text"), [
    ('time=2026-01-01T00:00:00Z level=INFO msg="replicating to" type=file sync-interval=1s path=/r',
     logging.INFO, 'msg="replicating to" type=file sync-interval=1s path=/r'),
    ('time=2026-01-01T00:00:00Z level=ERROR msg="sync error" system=store db=o.db error="open /r: denied"',
     logging.ERROR, 'msg="sync error" system=store db=o.db error="open /r: denied"'),
    ('time=2026-01-01T00:00:00Z level=WARN msg="slow"', logging.WARNING, 'msg="slow"'),
    ('time=2026-01-01T00:00:00Z level=INFO msg="compaction complete" system=store level=1', logging.DEBUG,
     'msg="compaction complete" system=store level=1'),
    ("Error: cannot open store: bad config", logging.ERROR, "Error: cannot open store: bad config"),
])
def test_litestream_log_lines_keep_their_level(line: str, level: int, text: str) -> None:
    assert parse_log_line(line + "\n") == (level, text)
