"""The daemon configuration (docs/design.md §3): YAML, only what the phone image knows; every key has a default.

The only module that imports yaml. Unknown keys and wrong types are errors naming the key, so a typo in
/etc/provd/provd.yaml never silently falls back to a default.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from provd.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_PATH = "/etc/provd/provd.yaml"
MODELS = ("D100", "D110", "D200", "D210", "D400", "D600")

DEFAULTS: dict[str, Any] = {
    "device": {"type": "D400", "serial": "0000000000", "mac": "auto", "interface": "eth0",
               "firmware": "2.12A-00000"},
    "paths": {"state_dir": "/var/lib/provd", "runtime_dir": "/run/provd"},
    "ntp": {"servers": ["pool.ntp.org"], "max_offset_s": 5.0, "timeout_s": 3.0, "required": True},
    "dhcp": {"mode": "inform", "timeout_s": 3.0, "vendor_class": "auerswald-<type>"},
    "redirect": {"url": "https://connect.redirect.auerswald.de/?mac={mac}&serial={serial}&type={type}",
                 "timeout_s": 5.0},
    "multicast": {"group": "224.0.1.75", "port": 5060, "local_port": 5060, "timeout_s": 5.0,
                  "vendor": "Auerswald"},
    "sip": {"listen": None},
    "http": {"timeout_s": 30.0, "max_file_bytes": 4194304, "max_run_bytes": 33554432, "concurrency": 4,
             "ca_file": None, "client_cert": None, "client_key": None, "user_agent": None},
    "references": {"max_depth": 8, "max_files": 64},
    "hooks": {"changed": {}, "reboot": None},
    "control": {"allow_file_urls": False},
    "log": {"level": "info"},
}
LOG_LEVELS = ("debug", "info", "warning", "error")  # the daemon's log threshold (docs/design.md §9); -v, -q override

# Keys whose value is free-form (a mapping or a list of argv strings), checked by shape only.
_FREE = {"hooks.changed", "hooks.reboot", "ntp.servers", "sip.listen", "http.ca_file", "http.client_cert",
         "http.client_key", "http.user_agent"}


class Config:
    """The merged configuration; sections are plain dicts after checking (read-only by convention).
    A plain class, not a dataclass: `provd start` talking to the daemon loads little more than this
    module, and importing dataclasses alone costs it 7 ms."""

    __slots__ = ("data", "path")

    def __init__(self, data: dict[str, Any], path: str | None) -> None:
        self.data = data
        self.path = path

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def state_dir(self) -> Path:
        from pathlib import Path

        return Path(os.path.expanduser(str(self.get("paths.state_dir"))))

    @property
    def runtime_dir(self) -> Path:
        from pathlib import Path

        return Path(os.path.expanduser(str(self.get("paths.runtime_dir"))))

    @property
    def max_file_bytes(self) -> int:
        return int(self.get("http.max_file_bytes"))


def load(path: str | None) -> Config:
    """Load `path`, else $PROVD_CONFIG, else /etc/provd/provd.yaml (absent → all defaults).

    Raises:
        ConfigError: unreadable, not YAML, unknown key, wrong type.
    """
    explicit = path or os.environ.get("PROVD_CONFIG")
    target = explicit or DEFAULT_PATH
    try:
        with open(target, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        if explicit:
            raise ConfigError("configuration file not found", path=target) from None
        return Config(_merge(DEFAULTS, {}, "", target), None)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration: {exc.strerror}", path=target) from exc
    return parse(text, source=target)


def parse(text: str, *, source: str) -> Config:
    import yaml  # only the config reader needs it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it
    try:
        raw = yaml.load(text, Loader=loader)  # a safe loader, chosen above
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=where) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping", path=source)
    data = _merge(DEFAULTS, raw, "", source)
    device = data["device"]
    if device["type"] not in MODELS:
        raise ConfigError(f"device.type must be one of {', '.join(MODELS)}, not {device['type']!r}", path=source)
    if data["log"]["level"] not in LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}, not {data['log']['level']!r}",
                          path=source)
    return Config(data, source)


def _merge(defaults: dict[str, Any], given: dict[str, Any], prefix: str, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in given:
        if key not in defaults:
            raise ConfigError(f"unknown key {prefix}{key}", path=source)
    for key, default in defaults.items():
        dotted = f"{prefix}{key}"
        if key not in given:
            out[key] = default
            continue
        value = given[key]
        if dotted in _FREE:
            out[key] = value
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{dotted} must be a mapping", path=source)
            out[key] = _merge(default, value, dotted + ".", source)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{dotted} must be true or false", path=source)
            out[key] = value
        elif isinstance(default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{dotted} must be a non-negative number", path=source)
            out[key] = type(default)(value)
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{dotted} must be a string", path=source)
            out[key] = value
    return out
