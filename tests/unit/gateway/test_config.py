from pathlib import Path

import pytest

from gateway.config import GatewayConfig, Protocol
from gateway.tomlconfig import ConfigError, loads

GOOD = """
[gateway]
id = "gw-a"
clinic_id = "clinic-a"
data_dir = "/tmp/x"
timezone = "Asia/Shanghai"

[[serial]]
port = "/dev/ttyUSB0"
protocol = "masimo"
device_id = "oxi-1"
patient_id = "P-1"

[[tcp]]
port = 2575
device_id = "lan"
"""


def test_example_config_parses() -> None:
    cfg = loads(GOOD, GatewayConfig)
    assert cfg.serial[0].protocol is Protocol.MASIMO
    assert cfg.outbox_path == Path("/tmp/x/outbox.db")
    assert cfg.tcp[0].protocol is Protocol.HL7


@pytest.mark.parametrize(("change", "expected"), [
    (("Asia/Shanghai", "Mars/Olympus"), "time zone 'Mars/Olympus' is not a known IANA zone"),
    (('id = "gw-a"', 'id = "gw/a"'), "id 'gw/a' must be"),
    (('protocol = "masimo"', 'protocol = "nonin"'), "expected one of 'hl7', 'masimo'"),
    (('device_id = "lan"', 'device_id = "oxi-1"'), "device ids must be unique; repeated: oxi-1"),
])
def test_invalid_settings_are_explained(change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        loads(GOOD.replace(*change), GatewayConfig, "gw.toml")


def test_check_config_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "gw.toml"
    path.write_text(GOOD.replace("2575", '"x"'))
    proc = subprocess.run([sys.executable, "-m", "gateway", "--config", str(path), "--check-config"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{path}:15: key 'tcp.0.port' = 'x': expected an integer" in proc.stderr
    assert "Traceback" not in proc.stderr
    path.write_text(GOOD)
    proc = subprocess.run([sys.executable, "-m", "gateway", "--config", str(path), "--check-config"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_missing_secret_file_is_reported_before_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "gw.toml"
    path.write_text(GOOD.replace("[[serial]]", f'[mqtt]\npassword_file = "{tmp_path}/nope"\n\n[[serial]]'))
    proc = subprocess.run([sys.executable, "-m", "gateway", "--config", str(path), "--check-config"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"file {tmp_path}/nope (named in [mqtt]) does not exist" in proc.stderr
