"""The phone's identity from the daemon configuration: model, serial, firmware, and the MAC address —
read from the interface when configured as `auto`."""

from __future__ import annotations

from pathlib import Path

from provd.config import Config
from provd.core.markers import normalise_mac
from provd.errors import ConfigError
from provd.model import Device


def interface_mac(interface: str, sysfs: Path = Path("/sys/class/net")) -> str:
    try:
        return (sysfs / interface / "address").read_text().strip()
    except OSError as exc:
        raise ConfigError(f"device.mac is auto but interface {interface!r} has no address: {exc.strerror}") from exc


def device_from_config(config: Config) -> Device:
    """Raises: ConfigError (MAC unreadable or malformed)."""
    mac = config.device.mac
    if mac == "auto":
        mac = interface_mac(config.device.interface)
    try:
        mac = normalise_mac(mac)
    except ValueError as exc:
        raise ConfigError(f"device.mac: {exc}", path=config.path) from exc
    return Device(type=config.device.type, serial=config.device.serial, mac=mac,
                  firmware=config.device.firmware)


def user_agent(config: Config, device: Device, version: str) -> str:
    """`provd/0.1.0 (D400; 2.12A-00000; 00095200000E)` unless `http.user_agent` says otherwise: a
    provisioning server can tell model, firmware and phone from the log line alone."""
    configured = config.http.user_agent
    if configured:
        return str(configured)
    return f"provd/{version} ({device.type}; {device.firmware}; {device.mac})"
