"""How merge recognises list entries: the key table (docs/design.md §4), data in one place.

A path names an element by its tags from the section root; `*` matches any one tag. An entry keyed by an
attribute is matched on that attribute and replaced whole (or appended). `POSITION` matches the n-th entry
of the patch with the n-th stored one and merges it like a record (identities: exactly six fixed slots,
no key attribute in the vendor format; an empty `<identity/>` in a patch leaves its slot as it is).
`WHOLE` elements are not merged inside: the patch's element replaces the stored one (lists of plain values,
opaque Lua/function trees).
"""

from __future__ import annotations

import functools

POSITION = "#position"

LIST_KEYS: dict[str, str] = {
    "keys/*/key": "keyNumber",  # vendor-documented [S:PATCH]
    "users/user": "name",  # the user name is the unique id [S:S-USERS-1.26]
    "templates/template": "name",
    "luaLibraries/luaLibrary": "name",
    "contactList/contact": "id",
    "identities/identity": POSITION,
}

WHOLE: frozenset[str] = frozenset({
    "provisioning/sip/allowlist",
    "keys/*/key/keyConfiguration",
    "templates/template/keyConfiguration",
})


def matches(pattern: str, path: tuple[str, ...]) -> bool:
    parts = pattern.split("/")
    return len(parts) == len(path) and all(p in ("*", t) for p, t in zip(parts, path, strict=True))


@functools.cache  # asked once per element of a patch: 10,000 contacts ask the same question
def list_key(path: tuple[str, ...]) -> str | None:
    """The key attribute (or POSITION) of the list entry at `path`, None when it is no keyed entry."""
    for pattern, key in LIST_KEYS.items():
        if matches(pattern, path):
            return key
    return None


@functools.cache
def is_whole(path: tuple[str, ...]) -> bool:
    return any(matches(pattern, path) for pattern in WHOLE)
