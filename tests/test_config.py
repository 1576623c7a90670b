"""The typed configuration (docs/design.md §3): defaults, typed values, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from provd import config
from provd.config import Config
from provd.errors import ConfigError


def test_absent_default_file_is_all_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROVD_CONFIG", raising=False)
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "none.yaml"))
    assert config.load(None) == Config()


def test_empty_file_is_the_defaults_with_its_path() -> None:
    assert config.parse("", source="p.yaml") == Config(path="p.yaml")


def test_values_come_typed() -> None:
    cfg = config.parse(
        "device: {type: D600, serial: '42'}\n"
        "paths: {state_dir: ~/state}\n"
        "ntp: {servers: [a, b], max_offset_s: 2}\n"
        "http: {timeout_s: 7, concurrency: 0, ca_file: /ca.pem}\n"
        "hooks: {changed: {'*': [/bin/true, 1]}, reboot: [/sbin/reboot]}\n",
        source="p.yaml")
    assert cfg.device.type == "D600" and cfg.device.serial == "42" and cfg.device.mac == "auto"
    assert cfg.paths.state_dir == Path.home() / "state"
    assert cfg.ntp.servers == ("a", "b") and cfg.ntp.max_offset_s == 2.0 and isinstance(cfg.ntp.max_offset_s, float)
    assert cfg.http.timeout_s == 7.0 and cfg.http.ca_file == "/ca.pem"
    assert cfg.http.concurrency == 1  # 0 means as few as possible: one connection
    assert cfg.hooks.changed == {"*": ("/bin/true", "1")} and cfg.hooks.reboot == ("/sbin/reboot",)


def test_frozen() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.http.timeout_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("nope: 1\n", "unknown key nope", id="unknown-section"),
    pytest.param("http: {max_file_byte: 3}\n", "unknown key http.max_file_byte", id="unknown-key"),
    pytest.param("http: 3\n", "http must be a mapping", id="section-not-mapping"),
    pytest.param("http: {timeout_s: fast}\n", "http.timeout_s must be a non-negative number", id="number"),
    pytest.param("http: {timeout_s: -1}\n", "http.timeout_s must be a non-negative number", id="negative"),
    pytest.param("http: {timeout_s: true}\n", "http.timeout_s must be a non-negative number", id="bool-number"),
    pytest.param("ntp: {required: 1}\n", "ntp.required must be true or false", id="bool"),
    pytest.param("device: {serial: 42}\n", "device.serial must be a string", id="string"),
    pytest.param("device: {type: D999}\n", "device.type must be one of", id="model"),
    pytest.param("log: {level: loud}\n", "log.level must be one of", id="log-level"),
    pytest.param("ntp: {servers: pool.ntp.org}\n", "ntp.servers must be a list of strings", id="servers-str"),
    pytest.param("hooks: {reboot: /sbin/reboot}\n", "hooks.reboot must be a list of strings", id="argv-str"),
    pytest.param("hooks: {changed: [a]}\n", "hooks.changed must be a mapping", id="hooks-list"),
    pytest.param("hooks: {changed: {keys: /bin/x}}\n", "hooks.changed.keys must be a list", id="hook-str"),
    pytest.param("sip: {listen: 5060}\n", "sip.listen must be a string", id="optional-str"),
    pytest.param("- a\n", "must be a mapping", id="not-mapping"),
    pytest.param("a: [\n", "not valid YAML", id="yaml"),
])
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as caught:
        config.parse(text, source="p.yaml")
    assert str(caught.value).startswith("p.yaml")
    assert "\n" not in str(caught.value)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(str(tmp_path / "none.yaml"))
