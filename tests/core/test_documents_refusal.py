"""The one rule for reference files applied by hand (docs/design.md §4.2), said in one place for every door."""

from __future__ import annotations

import pytest

from provd.core.documents import Document, Door, reference_refusal, refuse_reference
from provd.errors import RefusedDocument
from provd.model import DocumentKind
from provd.xmltree import new_element


@pytest.mark.parametrize("door", list(Door), ids=lambda d: d.name)
@pytest.mark.parametrize("kind", list(DocumentKind), ids=lambda k: k.value)
def test_only_a_reference_file_is_refused(kind: DocumentKind, door: Door) -> None:
    reason = reference_refusal(kind, door)
    if kind is DocumentKind.REFERENCE:
        assert reason is not None and door.value in reason and "restore backup" in reason
    else:
        assert reason is None


def test_refuse_reference_names_the_file() -> None:
    doc = Document(DocumentKind.REFERENCE, new_element("referencedSettings"), "ref.xml")
    with pytest.raises(RefusedDocument) as caught:
        refuse_reference(doc, Door.MANUAL_RESTORE)
    assert caught.value.source == "ref.xml" and str(caught.value).startswith("ref.xml: ")


def test_multicast_socket_failure_is_a_provd_error() -> None:
    import asyncio

    from provd.errors import MulticastUnavailable, SourceUnavailable
    from provd.sources import multicast

    with pytest.raises(MulticastUnavailable) as caught:  # 192.0.2.1 (TEST-NET-1) is no address of this host
        asyncio.run(multicast.lookup(local_ip="192.0.2.1", mac="001122334455", local_port=0, group="224.0.1.75",
                                     port=5060, window_s=0.1, vendor="v", model="D100", firmware="1",
                                     user_agent="ua"))
    assert isinstance(caught.value, SourceUnavailable) and "192.0.2.1" in str(caught.value)
