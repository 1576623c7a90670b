"""The daemon configuration (docs/design.md §3): YAML, only what the phone image knows; every key has a default.

The only module that imports yaml. The result is typed and frozen: one NamedTuple per section, so a caller
writes `config.http.timeout_s` and gets a float, never a cast. Unknown keys and wrong types are errors naming
the key, so a typo in /etc/provd/provd.yaml never silently falls back to a default. (NamedTuples, not
dataclasses: `provd start` talking to the daemon loads little more than this module, and dataclasses would
cost it ~15 ms of imports and class creation. No `from __future__ import annotations` either: NamedTuple
compiles every string annotation into a ForwardRef, 6 ms for these sections.)
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from provd.errors import ConfigError

DEFAULT_PATH = "/etc/provd/provd.yaml"
MODELS = ("D100", "D110", "D200", "D210", "D400", "D600")
LOG_LEVELS = ("debug", "info", "warning", "error")  # the daemon's log threshold (docs/design.md §9); -v, -q override

Argv = tuple[str, ...]


class DeviceConfig(NamedTuple):
    type: str = "D400"  # marker {type}; one of MODELS
    serial: str = "0000000000"
    mac: str = "auto"  # "auto": the interface's address
    interface: str = "eth0"
    firmware: str = "2.12A-00000"


class PathsConfig(NamedTuple):
    state_dir: Path = Path("/var/lib/provd")
    runtime_dir: Path = Path("/run/provd")


class NtpConfig(NamedTuple):
    servers: tuple[str, ...] = ("pool.ntp.org",)
    max_offset_s: float = 5.0
    timeout_s: float = 3.0
    required: bool = True


class DhcpConfig(NamedTuple):
    mode: str = "inform"  # inform | lease:PATH | off
    timeout_s: float = 3.0
    vendor_class: str = "auerswald-<type>"


class Dhcp6Config(NamedTuple):
    mode: str = "off"  # off | inform (docs/design.md §11)
    timeout_s: float = 3.0  # the first retransmission timeout (RFC 8415 IRT); doubled per try, 3 tries
    enterprise: int = 0  # option 17's enterprise number to read (0: any) and option 16's to send


DHCP6_MODES = ("off", "inform")


class RedirectConfig(NamedTuple):
    url: str = "https://connect.redirect.auerswald.de/?mac={mac}&serial={serial}&type={type}"
    timeout_s: float = 5.0


class MulticastConfig(NamedTuple):
    group: str = "224.0.1.75"
    # IANA "IPv6 Multicast Address Space Registry", Variable Scope Multicast Addresses: FF0X::175 "all SIP
    # servers" (registered 2015-07-21), here in link scope (X = 2). Not FF0X::14B, the RFC 2375-style mapping of
    # 224.0.1.75: that falls in FF0X::140-14F, EPSON-disc-set. See docs/protocols.md §1.9.
    group6: str = "ff02::175"
    port: int = 5060
    local_port: int = 5060
    timeout_s: float = 5.0
    vendor: str = "Auerswald"


class SipConfig(NamedTuple):
    listen: str | None = None  # HOST:PORT of the daemon's own check-sync listener (split_listen)


class HttpConfig(NamedTuple):
    timeout_s: float = 30.0
    max_file_bytes: int = 4194304
    max_run_bytes: int = 33554432
    concurrency: int = 4  # at least 1 once loaded
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    user_agent: str | None = None


class ReferencesConfig(NamedTuple):
    max_depth: int = 8
    max_files: int = 64


class HooksConfig(NamedTuple):
    changed: Mapping[str, Argv] = {}  # section name or "*" → argv
    reboot: Argv | None = None


class ControlConfig(NamedTuple):
    allow_file_urls: bool = False


class HealthConfig(NamedTuple):
    check: Argv | None = None  # exit 0 = healthy (docs/design.md §10); None: commits are not gated
    window_s: float = 300.0  # from the commit: confirmed by then, or rolled back
    interval_s: float = 15.0  # between checks; also each check's time limit


class ReportConfig(NamedTuple):
    url: str | None = None  # POST every result report here (markers allowed); None: none are kept
    timeout_s: float = 10.0
    max_pending: int = 100  # the outbox's bound; the oldest beyond it are dropped and counted


class LogConfig(NamedTuple):
    level: str = "info"  # one of LOG_LEVELS


class Config(NamedTuple):
    """The whole configuration; `path` is the file it came from (None: all defaults)."""

    device: DeviceConfig = DeviceConfig()
    paths: PathsConfig = PathsConfig()
    ntp: NtpConfig = NtpConfig()
    dhcp: DhcpConfig = DhcpConfig()
    dhcp6: Dhcp6Config = Dhcp6Config()
    redirect: RedirectConfig = RedirectConfig()
    multicast: MulticastConfig = MulticastConfig()
    sip: SipConfig = SipConfig()
    http: HttpConfig = HttpConfig()
    references: ReferencesConfig = ReferencesConfig()
    hooks: HooksConfig = HooksConfig()
    control: ControlConfig = ControlConfig()
    health: HealthConfig = HealthConfig()
    report: ReportConfig = ReportConfig()
    log: LogConfig = LogConfig()
    path: str | None = None


_SECTIONS: dict[str, type[tuple[object, ...]]] = {
    name: type(default) for name, default in Config._field_defaults.items() if name != "path"}


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
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration: {exc.strerror}", path=target) from exc
    return parse(text, source=target)


def parse(text: str, *, source: str) -> Config:
    """The configuration in `text` (YAML) over the defaults.

    Raises:
        ConfigError: not YAML, unknown key, wrong type or value; the message names the key.
    """
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
    for key in raw:
        if key not in _SECTIONS:
            raise ConfigError(f"unknown key {key}", path=source)
    sections: dict[str, object] = {}
    for name, cls in _SECTIONS.items():
        given = raw.get(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{name} must be a mapping", path=source)
        sections[name] = _section(cls, name, given, source)
    config = Config(**sections, path=source)  # type: ignore[arg-type]  # each value checked by _section
    if config.http.concurrency < 1:  # 0 means "as few as possible": one connection
        config = config._replace(http=config.http._replace(concurrency=1))
    if config.device.type not in MODELS:
        raise ConfigError(f"device.type must be one of {', '.join(MODELS)}, not {config.device.type!r}",
                          path=source)
    if config.dhcp6.mode not in DHCP6_MODES:
        raise ConfigError(f"dhcp6.mode must be one of {', '.join(DHCP6_MODES)}, not {config.dhcp6.mode!r}",
                          path=source)
    if config.health.interval_s <= 0 or config.health.window_s <= 0:
        raise ConfigError("health.window_s and health.interval_s must be greater than 0", path=source)
    if config.report.url is not None:
        _report_url(config.report.url, source)
    if config.log.level not in LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}, not {config.log.level!r}",
                          path=source)
    return config


def _section(cls: type[tuple[object, ...]], name: str, given: dict[object, object], source: str) -> object:
    defaults: dict[str, object] = getattr(cls, "_field_defaults")  # noqa: B009 - a NamedTuple class
    for key in given:
        if key not in defaults:
            raise ConfigError(f"unknown key {name}.{key}", path=source)
    values: dict[str, object] = {}
    for key, default in defaults.items():
        if key in given:
            values[key] = _value(f"{name}.{key}", default, given[key], source)
    return cls(**values)


def _value(dotted: str, default: object, value: object, source: str) -> object:
    """`value` checked against the type of `default` (and the few free-form keys by their shape)."""
    checker = _FREE.get(dotted)
    if checker is not None:
        return checker(dotted, value, source)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{dotted} must be true or false", path=source)
        return value
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{dotted} must be a non-negative number", path=source)
        return type(default)(value)
    if not isinstance(value, str):
        raise ConfigError(f"{dotted} must be a string", path=source)
    if isinstance(default, Path):
        return Path(os.path.expanduser(value))
    return value


def _optional_str(dotted: str, value: object, source: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(f"{dotted} must be a string", path=source)


def _strings(dotted: str, value: object, source: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list):
        raise ConfigError(f"{dotted} must be a list of strings", path=source)
    return tuple(str(v) for v in value)


def _argv(dotted: str, value: object, source: str) -> Argv | None:
    """A command as a list of arguments; empty or null means none."""
    if value is None:
        return None
    argv = _strings(dotted, value, source)
    return argv or None


def _hooks(dotted: str, value: object, source: str) -> Mapping[str, Argv]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{dotted} must be a mapping of section name to command", path=source)
    out: dict[str, Argv] = {}
    for section, argv in value.items():
        command = _argv(f"{dotted}.{section}", argv, source)
        if command:
            out[str(section)] = command
    return out


def _listen(dotted: str, value: object, source: str) -> str | None:
    listen = _optional_str(dotted, value, source)
    if listen is not None:
        split_listen(dotted, listen, source=source)
    return listen


def split_listen(dotted: str, listen: str, *, source: str | None = None) -> tuple[str, int]:
    """`HOST:PORT` as (host, port): `0.0.0.0:5060`, `127.0.0.1:5070`, `[::]:5060` (both families),
    `[2001:db8::1]:5060`, `[fe80::1%eth0]:5060` (the host without brackets, its zone kept), a host name;
    an empty host is `0.0.0.0`. An IPv6 address needs its brackets: in `::1:5060` the port is ambiguous.

    Raises:
        ConfigError: no port, a port outside 1-65535, an IPv6 address without brackets, brackets around
            something that is not an IPv6 address.
    """
    import ipaddress  # only when a listener is configured

    host, colon, port = listen.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{dotted} must be HOST:PORT with a port 1-65535, not {listen!r}", path=source)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)  # a zone (`%eth0`) is part of the address here (Python ≥ 3.9)
        except ValueError:
            raise ConfigError(f"{dotted}: [{host}] is not an IPv6 address", path=source) from None
    elif ":" in host or "[" in host or "]" in host:
        raise ConfigError(f"{dotted} {listen!r}: an IPv6 address goes in brackets, as in [::1]:5060", path=source)
    return host or "0.0.0.0", int(port)


_FREE = {
    "ntp.servers": _strings, "sip.listen": _listen, "http.ca_file": _optional_str,
    "http.client_cert": _optional_str, "http.client_key": _optional_str, "http.user_agent": _optional_str,
    "hooks.changed": _hooks, "hooks.reboot": _argv, "health.check": _argv,
}


def _multicast_group6(dotted: str, value: object, source: str) -> str:
    """An IPv6 multicast address (ff00::/8) without a zone (the interface is `device.interface`): anything else
    would send the SUBSCRIBE nowhere useful."""
    import ipaddress

    try:
        if isinstance(value, str) and "%" not in value and ipaddress.IPv6Address(value).is_multicast:
            return value
    except ValueError:
        pass
    raise ConfigError(f"{dotted} must be an IPv6 multicast address such as ff02::175, not {value!r}", path=source)


_FREE["multicast.group6"] = _multicast_group6
_FREE["report.url"] = _optional_str


def _report_url(url: str, source: str) -> None:
    """report.url must be an http(s) URL (markers allowed): reports are POSTed, never written to a file."""
    scheme = url.partition(":")[0].lower()
    if scheme not in ("http", "https") or not url[len(scheme):].startswith("://"):
        raise ConfigError(f"report.url must be an http:// or https:// URL, not {url!r}", path=source)
