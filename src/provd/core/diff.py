"""What a run would change (`provd start --dry-run`): per section, the elements added and removed and
the values changed, as XPaths that name list entries by their key. Pure.
"""

from __future__ import annotations

from provd import xmltree
from provd.core.listkeys import POSITION, is_whole, list_key
from provd.model import SectionDiff
from provd.xmltree import Element, element_children


def diff(old: Element, new: Element) -> SectionDiff:
    before, after = _index(old), _index(new)
    added = _minimal(set(after) - set(before))
    removed = _minimal(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    return SectionDiff(xmltree.tag(new), tuple(added), tuple(changed), tuple(removed))


def _minimal(paths: set[str]) -> list[str]:
    """Only the topmost of the paths: a new key is reported, not each of its leaves."""
    return sorted(p for p in paths if not any(p.startswith(q + "/") for q in paths if q != p))


def _index(root: Element) -> dict[str, str]:
    """{path: value} for every element (value: own text and attributes) of a section."""
    out: dict[str, str] = {}
    _walk(root, f"/{xmltree.tag(root)}", (xmltree.tag(root),), out, is_root=True)
    return out


def _walk(el: Element, path: str, tags: tuple[str, ...], out: dict[str, str], *, is_root: bool = False) -> None:
    attrs = sorted((str(k), str(v)) for k, v in el.attrib.items() if not (is_root and k == "version"))
    if is_whole(tags):
        out[path] = xmltree.serialize(el)
        return
    out[path] = f"{(el.text or '').strip() if len(el) == 0 else ''}{attrs if attrs else ''}"
    counts: dict[str, int] = {}
    totals: dict[str, int] = {}
    for child in element_children(el):
        totals[xmltree.tag(child)] = totals.get(xmltree.tag(child), 0) + 1
    for child in element_children(el):
        tag = xmltree.tag(child)
        child_tags = (*tags, tag)
        key = list_key(child_tags)
        counts[tag] = counts.get(tag, 0) + 1
        if key is not None and key != POSITION:
            step = f"{tag}[@{key}='{child.get(key, '')}']"
        elif key == POSITION or totals[tag] > 1:
            step = f"{tag}[{counts[tag]}]"
        else:
            step = tag
        _walk(child, f"{path}/{step}", child_tags, out)
