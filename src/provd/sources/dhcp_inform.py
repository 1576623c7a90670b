"""DHCP as a discovery source: a DHCPINFORM through the short-lived child (`provd.sources.dhcp_child`), or an ISC
dhclient lease file (`dhcp.mode: lease:PATH`). Returns the answer for `core.dhcp` to turn into a URL."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from provd.core.dhcp import DhcpAnswer, parse_dhclient_lease
from provd.errors import DhcpUnavailable


def _bytes(value: object) -> bytes | None:
    return bytes.fromhex(value) if isinstance(value, str) else None


async def inform(*, interface: str, address: str, mac: str, vendor_class: str, first_wait: float,
                 ) -> tuple[DhcpAnswer | None, str]:
    """(the ACK's answer or None when no server answered, a detail line).

    Raises:
        DhcpUnavailable.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provd.sources.dhcp_child", interface, address, mac, vendor_class, str(first_wait),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled: the child must not outlive the run
            proc.kill()
            await proc.wait()
    try:
        result = json.loads(out.decode() or "{}")
    except ValueError as exc:
        raise DhcpUnavailable(f"DHCP helper failed: {err.decode(errors='replace').strip()[-200:]}") from exc
    if "error" in result:
        raise DhcpUnavailable(f"DHCPINFORM on {interface}: {result['error']}")
    answer = result.get("answer")
    if not answer:
        return None, f"no DHCPACK after {result.get('tries')} tries"
    parsed = DhcpAnswer(option43=_bytes(answer.get("option43")), option66=_bytes(answer.get("option66")),
                        option67=_bytes(answer.get("option67")), sname=_bytes(answer.get("sname")),
                        file=_bytes(answer.get("file")), ntp_servers=tuple(answer.get("ntp") or ()))
    return parsed, f"DHCPACK from {result.get('server')} after {result.get('tries')} tries"


def read_lease(path: str) -> tuple[DhcpAnswer | None, str]:
    """Raises: DhcpUnavailable (unreadable file)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DhcpUnavailable(f"lease file {path}: {exc.strerror}") from exc
    answer = parse_dhclient_lease(text)
    return answer, f"lease file {path}" + ("" if answer else ": no lease in it")
