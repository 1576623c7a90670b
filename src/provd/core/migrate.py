"""Declarative migration steps between consecutive settings versions (docs/design.md §5), and applying them.

The steps live as data in `schemas/migrations/<from>_<to>.xml`, each with a note saying why; this module
reads that data and applies it to a section element in place. Paths are relative to the section root,
`/`-separated tags, `*` any tag, `.` the root. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from provd import xmltree
from provd.errors import MigrationError
from provd.xmltree import Element, element_children


class StepKind(Enum):
    RENAME = "rename"  # every selected element gets the new tag
    ADD = "add"  # every selected parent lacking `name` gets <name>default</name> (full sections only)
    REMOVE = "remove"  # every selected element goes
    MOVE = "move"  # every selected element moves to `to` (last step = its new tag), containers created


@dataclass(frozen=True)
class Step:
    kind: StepKind
    path: str  # rename/remove/move: the elements; add: the parents
    to: str = ""  # rename: the new tag; move: the target path
    name: str = ""  # add: the new element
    default: str = ""  # add: its text
    note: str = ""


@dataclass(frozen=True)
class Migration:
    """The steps from one version to the next, per section."""

    source: str
    target: str
    steps: dict[str, tuple[Step, ...]]


def parse_migration(root: Element, *, source: str) -> Migration:
    """Read one `<migration from=… to=…>` file.

    Raises:
        MigrationError: unknown step, or a step without the attributes it needs.
    """
    steps: dict[str, tuple[Step, ...]] = {}
    for section in element_children(root):
        items = []
        for entry in element_children(section):
            try:
                kind = StepKind(str(entry.tag))
            except ValueError:
                raise MigrationError(f"unknown migration step <{entry.tag}>", source=source,
                                     line=xmltree.line(entry)) from None
            note = " ".join((entry.findtext("note") or "").split())
            step = Step(kind, entry.get("path", entry.get("parent", "")), entry.get("to", ""),
                        entry.get("name", ""), entry.get("default", ""), note)
            if not step.path or (kind in (StepKind.RENAME, StepKind.MOVE) and not step.to) or (
                    kind is StepKind.ADD and not step.name):
                raise MigrationError(f"incomplete <{kind.value}> step", source=source, line=xmltree.line(entry))
            items.append(step)
        steps[section.get("name", "")] = tuple(items)
    return Migration(root.get("from", ""), root.get("to", ""), steps)


def select(root: Element, path: str) -> list[Element]:
    current = [root]
    for part in path.split("/"):
        if part in (".", ""):
            continue
        current = [c for node in current for c in element_children(node) if part in ("*", c.tag)]
    return current


def apply_steps(root: Element, steps: tuple[Step, ...], *, full: bool) -> list[str]:
    """Apply `steps` to the section `root` in place; returns a line per change made (for the report).

    `full` is false for a merge patch, which may hold any subset of a section: an `add` step then does
    nothing, since adding the new element's default would overwrite the stored value the patch left alone.
    """
    done: list[str] = []
    for step in steps:
        if step.kind is StepKind.RENAME:
            for el in select(root, step.path):
                el.tag = step.to
                done.append(f"renamed {step.path} to {step.to}")
        elif step.kind is StepKind.REMOVE:
            for el in select(root, step.path):
                parent = el.getparent()
                if parent is not None:
                    parent.remove(el)
                    done.append(f"removed {step.path}")
        elif step.kind is StepKind.ADD:
            if not full:
                continue
            for parent in select(root, step.path):
                if parent.find(step.name) is None:
                    parent.append(xmltree.new_element(step.name, step.default))
                    done.append(f"added {step.path}/{step.name}".replace("./", ""))
        else:
            for el in select(root, step.path):
                _move(root, el, step.to)
                done.append(f"moved {step.path} to {step.to}")
    return done


def _move(root: Element, el: Element, to: str) -> None:
    *containers, name = [p for p in to.split("/") if p not in ("", ".")]
    parent = root
    for tag in containers:
        child = parent.find(tag)
        if child is None:
            child = xmltree.new_element(tag)
            parent.append(child)
        parent = child
    old_parent = el.getparent()
    if old_parent is not None:
        old_parent.remove(el)
    el.tag = name
    el.tail = None
    existing = parent.find(name)
    if existing is not None:
        parent.replace(existing, el)
    else:
        parent.append(el)
