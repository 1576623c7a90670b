"""Marker replacement in URLs (docs/design.md §4): device data in place of `<SERIAL>`/`{serial}`,
`<HWTYP>`/`{type}` and `<MACADR>`/`{mac}`. Pure.

Markers are replaced before a URL is resolved against its base. Values are percent-encoded, so a serial
with a space or a slash cannot change the URL's structure. The vendor writes markers in angle brackets,
which tools that build URLs tend to percent-encode (`%3CMACADR%3E`); both spellings are recognised. `<type>`
is read as `<HWTYP>`: docs/design.md §3 writes the default `dhcp.vendor_class` as "auerswald-<type>", and a
phone that sent that literally would miss every server class keyed on the model. Only those names count as
markers: the square brackets of an IPv6 literal (`http://[2001:db8::1]:8080/{mac}.xml`) are never touched,
and a value cannot close one (`]` is percent-encoded like any other reserved character).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from provd.model import Device

_MARKERS = {
    "SERIAL": "serial",
    "HWTYP": "type",
    "MACADR": "mac",
}
_PATTERN = re.compile(
    r"<(SERIAL|HWTYP|MACADR|TYPE)>|%3C(SERIAL|HWTYP|MACADR)%3E|\{(serial|type|mac)\}", re.IGNORECASE)


def normalise_mac(mac: str) -> str:
    """`00:09:52:00:00:0e` → `00095200000E`.

    Raises:
        ValueError: not 12 hex digits once separators are removed.
    """
    digits = re.sub(r"[:\-.\s]", "", mac).upper()
    if not re.fullmatch(r"[0-9A-F]{12}", digits):
        raise ValueError(f"not a MAC address: {mac!r}")
    return digits


def replace_markers(url: str, device: Device) -> str:
    values = {"serial": device.serial, "type": device.type, "mac": device.mac}

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        key = _MARKERS.get(name.upper(), name.lower())
        return quote(values[key], safe="")

    return _PATTERN.sub(value, url)
