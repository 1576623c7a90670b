"""The per-section apply of parsed documents to a `WorkingCopy` (the settings as one run changes them).

Per section: detect the version, migrate step by step, merge or replace, drop what the current XSD does
not know, validate; a section that fails is rejected alone (docs/design.md §5) and the working copy keeps its
previous state. Operations are all-or-nothing per section (docs/design.md §4). Nothing here writes anywhere: the
caller commits `WorkingCopy.changed()` to the store in one transaction.
"""

from __future__ import annotations

from provd import xmltree
from provd.core import operations, patch, shape, versions
from provd.core.documents import Document, Door, refuse_reference
from provd.errors import DocumentError, SchemaError
from provd.model import ChangeAction, DocumentKind, SectionChange
from provd.settings.catalog import Catalog
from provd.settings.working_copy import WorkingCopy, migrate_section
from provd.xmltree import Element, element_children


def apply_document(catalog: Catalog, wc: WorkingCopy, doc: Document) -> list[SectionChange]:
    """Apply a patch or operations document to `wc`.

    Raises:
        RefusedDocument: a reference document (only the chain expands those).
        DocumentError: the document as a whole is unusable (bad `patchDefault`, operations schema).
    """
    if doc.kind is DocumentKind.PATCH:
        return _apply_patch(catalog, wc, doc)
    refuse_reference(doc, Door.WORKING_COPY)
    return _apply_operations(catalog, wc, doc)


def check_document(catalog: Catalog, doc: Document) -> list[SectionChange]:
    """`provd validate`: a patch is valid when applying it to the factory defaults gives valid sections;
    reference and operations files are checked against their own schemas (and XPath syntax).

    Raises:
        DocumentError: the document as a whole is invalid.
    """
    if doc.kind is DocumentKind.PATCH:
        return _apply_patch(catalog, WorkingCopy(catalog, lambda _name: None), doc)
    if doc.kind is DocumentKind.REFERENCE:
        catalog.file_schema("provisioning_references").check(doc.root, source=doc.source)
        return []
    catalog.file_schema("operations").check(doc.root, source=doc.source)
    changes: list[SectionChange] = []
    for op in operations.parse_operations(doc.root, source=doc.source):
        if op.section not in catalog.sections:
            raise SchemaError(f"unknown section {op.section!r}", source=doc.source, line=op.line, xpath=op.path)
        operations.check_path(op, source=doc.source)
        xmltree.xpath_select(xmltree.new_element(op.section), op.path, source=doc.source, line=op.line)
        if not any(c.section == op.section for c in changes):
            changes.append(SectionChange(op.section, ChangeAction.OPERATIONS, doc.source))
    return changes


def _apply_patch(catalog: Catalog, wc: WorkingCopy, doc: Document) -> list[SectionChange]:
    root = doc.root
    if root.tag == "configuration":
        default_merge = patch.parse_bool(root.get("patchDefault"), default=True, source=doc.source,
                                         xpath="/configuration/@patchDefault")
        sections = list(element_children(root))
    else:
        default_merge, sections = True, [root]
    return [_apply_section(catalog, wc, el, default_merge, doc.source) for el in sections]


def _apply_section(catalog: Catalog, wc: WorkingCopy, el: Element, default_merge: bool,
                   source: str) -> SectionChange:
    name = str(el.tag)
    if name not in catalog.sections:
        return SectionChange(name, ChangeAction.REJECTED, source,
                             errors=(f"{source}:{xmltree.line(el)}: unknown settings section <{name}>",))
    warnings: list[str] = []
    try:
        merge = patch.parse_bool(el.get("patch"), default=default_merge, source=source,
                                 xpath=f"/{name}/@patch")
        action = ChangeAction.MERGED if merge else ChangeAction.REPLACED
        declared = el.get("version")
        version = _detect_version(catalog, name, el) if declared is None else None
        if declared is not None:
            version, warning = versions.resolve_version(declared, catalog.versions(name))
            if warning:
                warnings.append(f"{source}: <{name}>: {warning}")
        assert version is not None
        migrated = tuple(migrate_section(catalog, el, version, full=not merge))
        current = catalog.current(name)
        if merge:
            result = wc.take(name)
            patch.merge(result, el, catalog.shape(name, current))
        else:
            result = el
        issues = catalog.schema(name, current).issues(result)
        if issues:
            # Unknown elements only ever come from the patch (the stored part is valid), so pruning the
            # merged result is pruning the patch; it is done only when needed, as the walk costs time.
            dropped = shape.unknown_nodes(result, catalog.shape(name, current), prune=True)
            if dropped:
                warnings += [f"{source}: dropped {p}: unknown in {name} {current}" for p in dropped]
                issues = catalog.schema(name, current).issues(result)
        if issues:
            return SectionChange(name, ChangeAction.REJECTED, source, tuple(warnings),
                                 tuple(_issue_text(source, i) for i in issues), migrated)
    except DocumentError as exc:
        return SectionChange(name, ChangeAction.REJECTED, source, errors=(str(exc),))
    for attr in patch.CONTROL_ATTRIBUTES:
        if attr in result.attrib:
            del result.attrib[attr]
    result.set("version", current)
    wc.put(name, result)
    return SectionChange(name, action, source, tuple(warnings), migrated=migrated)


def _detect_version(catalog: Catalog, name: str, el: Element) -> str:
    """docs/design.md §5: validate against the known XSDs, newest first; a partial merge patch fails every XSD
    whose required elements it lacks, so the next test is whether a version knows every element it has;
    none → the oldest."""
    newest_first = list(reversed(catalog.versions(name)))
    for version in newest_first:
        if not catalog.schema(name, version).issues(el):
            return version
    for version in newest_first:
        if not shape.unknown_nodes(el, catalog.shape(name, version), prune=False):
            return version
    return newest_first[-1]


def _issue_text(source: str, issue: xmltree.Issue) -> str:
    where = f"{source}:{issue.line}" if issue.line else source
    text = f"{where}: {issue.message}"
    return f"{text} (at {issue.xpath})" if issue.xpath else text


def _apply_operations(catalog: Catalog, wc: WorkingCopy, doc: Document) -> list[SectionChange]:
    catalog.file_schema("operations").check(doc.root, source=doc.source)
    ops = operations.parse_operations(doc.root, source=doc.source)
    by_section: dict[str, list[operations.Operation]] = {}
    for op in ops:
        by_section.setdefault(op.section, []).append(op)
    changes = []
    for name, section_ops in by_section.items():
        changes.append(_apply_section_operations(catalog, wc, name, section_ops, doc.source))
    return changes


def _apply_section_operations(catalog: Catalog, wc: WorkingCopy, name: str,
                              section_ops: list[operations.Operation], source: str) -> SectionChange:
    def rejected(*errors: str) -> SectionChange:
        return SectionChange(name, ChangeAction.REJECTED, source, errors=errors)

    if name not in catalog.sections:
        return rejected(f"{source}: unknown settings section {name!r}; its operations were discarded")
    root = wc.take(name)
    try:
        for op in section_ops:
            root = operations.apply_operation(root, op, source=source)
    except DocumentError as exc:
        return rejected(f"{exc}; all operations on <{name}> were discarded")
    issues = catalog.schema(name, catalog.current(name)).issues(root)
    if issues:
        return rejected(*(_issue_text(source, i) for i in issues),
                        f"{source}: the result is invalid; all operations on <{name}> were discarded")
    wc.put(name, root)
    return SectionChange(name, ChangeAction.OPERATIONS, source)
