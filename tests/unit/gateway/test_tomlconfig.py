from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.tomlconfig import ConfigError, field_docs, load, loads


@dataclass(frozen=True)
class Port:
    path: str = field(metadata={"doc": "device path"})
    baud: int = 9600


@dataclass(frozen=True)
class Net:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata={"doc": "broker port"})
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} must be 1-65535")


@dataclass(frozen=True)
class Cfg:
    net: Net = field(default_factory=Net)
    ports: list[Port] = field(default_factory=list)
    name: str | None = None
    data: Path = Path("/var/lib/x")


def test_defaults_and_values() -> None:
    cfg = loads('name = "x"\n[net]\nport = 1884\nratio = 1\n[[ports]]\npath = "/dev/a"\n', Cfg)
    assert cfg == Cfg(Net(port=1884, ratio=1.0), [Port("/dev/a")], "x")
    assert loads("", Cfg) == Cfg()


@pytest.mark.parametrize(("text", "expected"), [
    ('[net]\nport = "a"\n', "cfg.toml:2: key 'net.port' = 'a': expected an integer"),
    ("[net]\nhots = 1\n", "cfg.toml:2: unknown key 'net.hots'; expected one of: host, port, ratio"),
    ("[net]\nport = 0\n", "cfg.toml:1: [net] port 0 must be 1-65535"),
    ('[[ports]]\npath = "a"\n[[ports]]\nbaud = 1\n', "cfg.toml:3: missing required key 'ports.1.path' (device path)"),
    ('[[ports]]\npath = "a"\n\n[[ports]]\npath = "b"\nbaud = "x"\n', "cfg.toml:6: key 'ports.1.baud'"),
    ("name = 3\n", "cfg.toml:1: key 'name' = 3: expected a string"),
    ("[net]\nport = true\n", "expected an integer"),
    ("x =", "cfg.toml: invalid TOML"),
])
def test_errors_name_file_line_key_and_expectation(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads(text, Cfg, "cfg.toml")
    assert expected in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml", Cfg)


def test_field_docs_lists_every_setting() -> None:
    keys = [k for k, *_ in field_docs(Cfg)]
    assert keys == ["net.host", "net.port", "net.ratio", "ports[].path", "ports[].baud", "name", "data"]
