"""The network bench's fixtures in one place, for one import line in a conftest:
`from tests.support.peers.netbench import (check_sync, dhcp_server, netns, netns6, netns_dual, ntp_server,
pnp_responder, prov_http, redirect_service)  # noqa: F401`. Each lives in its own module: netns, dhcp, ntp, sip, web.
"""

from __future__ import annotations

from tests.support.peers.dhcp import dhcp_server
from tests.support.peers.dhcp6 import dhcp6_server as dhcp6_server  # explicit re-export (IPv6 pairs only)
from tests.support.peers.netns import netns, netns6, netns_dual
from tests.support.peers.ntp import ntp_server
from tests.support.peers.sip import check_sync, pnp_responder
from tests.support.peers.web import prov_http, redirect_service

__all__ = ["check_sync", "dhcp_server", "netns", "netns6", "netns_dual", "ntp_server", "pnp_responder", "prov_http",
           "redirect_service"]
