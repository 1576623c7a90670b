"""The data under schemas/: every XSD compiles, defaults and the vendor's examples validate, the versions
differ where they should, and each migration step is complete and leads from one version's XSD to the
next. Checks files only (lxml and xmlschema, which must agree); the code that reads them is tested elsewhere.
"""

from __future__ import annotations

import copy
import functools
import itertools
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
VENDOR_EXAMPLES = REPO / "tests" / "data" / "vendor-examples"  # byte for byte as published (tests/data/README.md)

SECTIONS = (
    "provisioning", "identities", "keys", "templates", "luaLibraries", "users", "telephony", "contactList"
)
VERSIONS = ("1.8.8", "1.26.11", "1.34.0")  # oldest first
CURRENT = VERSIONS[-1]
ALL = frozenset(VERSIONS)
NONE: frozenset[str] = frozenset()
SINCE_1_26_11 = frozenset({"1.26.11", "1.34.0"})
UNTIL_1_26_11 = frozenset({"1.8.8", "1.26.11"})
ONLY_1_8_8 = frozenset({"1.8.8"})
XS = "{http://www.w3.org/2001/XMLSchema}"
STEP_KINDS = {"rename": ("path", "to"), "add": ("parent", "name", "default"), "remove": ("path",),
              "move": ("path", "to")}


def _parser() -> etree.XMLParser:
    return etree.XMLParser(remove_comments=True, resolve_entities=False, no_network=True)


def _parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, _parser())


def _xsd_path(name: str, version: str | None = None) -> Path:
    return SCHEMAS / name if version is None else SCHEMAS / "settings" / name / f"{version}.xsd"


@functools.cache
def _lxml_schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path), _parser()))


@functools.cache
def _xmlschema_schema(path: Path) -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(str(path))


def _is_valid(path: Path, element: etree._Element) -> bool:
    """Validate `element` as a document of its own with both validators, which must agree."""
    document = copy.deepcopy(element)
    by_lxml = _lxml_schema(path).validate(document)
    by_xmlschema = bool(_xmlschema_schema(path).is_valid(document))
    assert by_lxml == by_xmlschema, f"lxml says {by_lxml}, xmlschema says {by_xmlschema} ({path})"
    return by_lxml


def _valid_versions(section: str, element: etree._Element) -> frozenset[str]:
    return frozenset(v for v in VERSIONS if _is_valid(_xsd_path(section, v), element))


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]


# --- every XSD compiles and keeps to docs/schema-conventions.md ----------------------------------------

SETTINGS_XSDS = [_xsd_path(s, v) for s in SECTIONS for v in VERSIONS]
ALL_XSDS = [*SETTINGS_XSDS, SCHEMAS / "operations.xsd", SCHEMAS / "provisioning_references.xsd"]
XSD_IDS = [str(p.relative_to(SCHEMAS)) for p in ALL_XSDS]
ALLOWED_XSD_TAGS = {
    f"{XS}{name}" for name in (
        "schema", "annotation", "documentation", "element", "complexType", "simpleType", "sequence", "all",
        "choice", "any", "attribute", "simpleContent", "extension", "restriction", "pattern", "enumeration",
        "minInclusive", "maxInclusive", "minLength", "unique", "selector", "field",
    )
}


def test_every_section_has_every_version() -> None:
    assert sorted(p.relative_to(SCHEMAS) for p in (SCHEMAS / "settings").glob("*/*.xsd")) == sorted(
        p.relative_to(SCHEMAS) for p in SETTINGS_XSDS
    )


@pytest.mark.parametrize("path", ALL_XSDS, ids=XSD_IDS)
def test_xsd_compiles_with_lxml(path: Path) -> None:
    _lxml_schema(path)


@pytest.mark.parametrize("path", ALL_XSDS, ids=XSD_IDS)
def test_xsd_compiles_with_xmlschema(path: Path) -> None:
    _xmlschema_schema(path)


@pytest.mark.parametrize("path", ALL_XSDS, ids=XSD_IDS)
def test_xsd_keeps_to_the_walkable_subset(path: Path) -> None:
    schema = etree.parse(str(path), _parser()).getroot()
    assert schema.get("targetNamespace") is None
    in_documentation = {id(n) for doc in schema.iter(f"{XS}documentation") for n in doc.iterdescendants()}
    for node in schema.iter(etree.Element):
        if node.tag == f"{XS}documentation" or id(node) in in_documentation:
            continue
        assert node.tag in ALLOWED_XSD_TAGS, f"{node.tag} at line {node.sourceline}"
        assert node.get("ref") is None, f"ref= at line {node.sourceline}"
        if node.tag == f"{XS}all":
            for child in _elements(node):
                assert child.get("minOccurs") == "0", f"xs:all child, line {child.sourceline}"
    global_elements = schema.findall(f"{XS}element")
    assert len(global_elements) == 1
    if path in SETTINGS_XSDS:
        root = global_elements[0]
        assert root.get("name") == path.parent.name
        complex_type = root.find(f"{XS}complexType")
        assert complex_type is not None
        attributes = {a.get("name"): a for a in complex_type.findall(f"{XS}attribute")}
        assert set(attributes) == {"version", "patch"}
        assert all(a.get("use") in (None, "optional") for a in attributes.values())


# --- factory defaults ----------------------------------------------------------------------------------

def test_defaults_cover_every_section() -> None:
    assert sorted(p.stem for p in (SCHEMAS / "defaults").glob("*.xml")) == sorted(SECTIONS)


@pytest.mark.parametrize("section", SECTIONS)
def test_defaults_validate_against_the_current_xsd(section: str) -> None:
    root = _parse((SCHEMAS / "defaults" / f"{section}.xml").read_bytes())
    assert root.tag == section
    assert root.get("version") == CURRENT
    assert _is_valid(_xsd_path(section, CURRENT), root)


def test_default_identities_are_six_inactive_udp_5060() -> None:
    root = _parse((SCHEMAS / "defaults" / "identities.xml").read_bytes())
    identities = _elements(root)
    assert len(identities) == 6
    assert {(i.findtext("active"), i.findtext("port"), i.findtext("transport")) for i in identities} == {
        ("false", "5060", "udp")
    }


# --- the vendor's published files, unchanged apart from their encoding typo -----------------------------

def _read_vendor_example(name: str) -> etree._Element:
    data = (VENDOR_EXAMPLES / name).read_bytes()
    # Four of the files declare encoding="utf=8", which lxml refuses; provd itself reads it as UTF-8.
    return _parse(data.replace(b'encoding="utf=8"', b'encoding="utf-8"'))


def _vendor_sections(root: etree._Element) -> list[etree._Element]:
    return _elements(root) if root.tag == "configuration" else [root]


def _vendor_params() -> list[object]:
    params: list[object] = []
    for path in sorted(VENDOR_EXAMPLES.glob("*.xml")):
        for index, section in enumerate(_vendor_sections(_read_vendor_example(path.name))):
            params.append(pytest.param(path.name, index, id=f"{path.name}:{section.tag}"))
    return params


def test_vendor_examples_are_there() -> None:
    assert len(list(VENDOR_EXAMPLES.glob("*.xml"))) == 6, VENDOR_EXAMPLES


@pytest.mark.parametrize(("name", "index"), _vendor_params())
def test_vendor_example_section_validates_against_the_current_xsd(name: str, index: int) -> None:
    section = _vendor_sections(_read_vendor_example(name))[index]
    assert section.tag in SECTIONS
    assert _is_valid(_xsd_path(section.tag, CURRENT), section)


# --- hand-written instances: which versions accept them --------------------------------------------------

PROVISIONING_1_8_8 = """
<provisioning version="1.8.8">
  <active>false</active><dhcp>true</dhcp><redirect>false</redirect><url>https://prov.example/x.xml</url>
  <sip><active>true</active>
    <whitelist><whitelistEntry>192.168.0.200</whitelistEntry><whitelistEntry>pbx.example</whitelistEntry></whitelist>
  </sip>
  <execution><mondays>true</mondays><sundays>false</sundays><time>3:15</time><useRandomDelay>true</useRandomDelay>
    <minimalRandomDelay>60</minimalRandomDelay><maximalRandomDelay>3600</maximalRandomDelay></execution>
</provisioning>"""
PROVISIONING_1_26_11 = """
<provisioning version="1.26.11">
  <active>true</active><dhcp>false</dhcp><redirect>true</redirect><pbx>false</pbx><url/>
  <sip><active>false</active><allowlist><allowlistEntry>192.168.0.200</allowlistEntry></allowlist></sip>
  <execution><time>23:59</time></execution>
</provisioning>"""
TELEPHONY_1_8_8 = """
<telephony version="1.8.8">
  <callWaiting><active>true</active></callWaiting><callWaitingTone>false</callWaitingTone>
  <callForwarding><busy><active>true</active><target>**21</target><timeout>0</timeout></busy></callForwarding>
</telephony>"""
TELEPHONY_1_26_11 = """
<telephony version="1.26.11"><callWaiting><active>true</active><tone>false</tone></callWaiting></telephony>"""
USERS_1_8_8 = """
<users version="1.8.8">
  <user name="admin"><password>x</password><role>admin</role><image>@drawable/admin</image></user>
  <user name="anna"><displayName>Anna</displayName><role>user</role>
    <changePassword>false</changePassword></user>
</users>"""
USERS_1_26_11 = """
<users version="1.26.11">
  <user name="admin"><image>aGVsbG8=</image><changePassword>true</changePassword></user>
</users>"""


def _keys(container: str, count: int) -> str:
    keys = "".join(f'<key keyNumber="{n}"/>' for n in range(1, count + 1))
    return f"<keys><{container}>{keys}</{container}></keys>"


def _identities(count: int, body: str = "<active>false</active>") -> str:
    return "<identities>" + f"<identity>{body}</identity>" * count + "</identities>"


CONTACT = """
<contactList><contact id="c1">
  <displayName>Anna Beispiel</displayName><givenName>Anna</givenName><familyName>Beispiel</familyName>
  <starred>1</starred><photo>aGVsbG8=</photo>
  <phoneNumbers>
    <phoneNumber type="work" primary="true">+495311234</phoneNumber><phoneNumber>**21#</phoneNumber>
  </phoneNumbers>
  <emailAddresses><emailAddress type="work">anna@example.org</emailAddress></emailAddresses>
  <postalAddresses><postalAddress type="home"><street>Weg 1</street><city>Cremlingen</city></postalAddress>
  </postalAddresses>
</contact></contactList>"""

def _execution(body: str) -> str:
    return f"<provisioning><execution>{body}</execution></provisioning>"


def _contact(body: str) -> str:
    return f'<contactList><contact id="c">{body}</contact></contactList>'


def _ops(body: str) -> str:
    return f"<operations>{body}</operations>"


INSTANCES: list[tuple[str, str, frozenset[str]]] = [
    # (id, document, the versions whose XSD accepts it); the root element names the section
    ("provisioning-1.8.8-whitelist", PROVISIONING_1_8_8, ONLY_1_8_8),
    ("provisioning-1.26.11-allowlist-pbx", PROVISIONING_1_26_11, SINCE_1_26_11),
    ("provisioning-one-leaf", "<provisioning><url>http://a/b</url></provisioning>", ALL),
    ("provisioning-time-0:00", _execution("<time>0:00</time>"), ALL),
    ("provisioning-time-24:00", _execution("<time>24:00</time>"), NONE),
    ("provisioning-time-7:5", _execution("<time>7:5</time>"), NONE),
    ("provisioning-time-space", _execution("<time> 7:05</time>"), NONE),
    ("provisioning-negative-delay", _execution("<minimalRandomDelay>-1</minimalRandomDelay>"), NONE),
    ("provisioning-unknown-element", "<provisioning><onBoot>true</onBoot></provisioning>", NONE),
    ("provisioning-bad-version", '<provisioning version="new"/>', NONE),
    ("provisioning-bad-patch", '<provisioning patch="maybe"/>', NONE),
    ("telephony-1.8.8-callWaitingTone", TELEPHONY_1_8_8, ONLY_1_8_8),
    ("telephony-1.26.11-tone", TELEPHONY_1_26_11, SINCE_1_26_11),
    ("users-1.8.8-image", USERS_1_8_8, UNTIL_1_26_11),
    ("users-1.26.11-image", USERS_1_26_11, UNTIL_1_26_11),
    ("users-no-image", '<users patch="false"><user name="x"><role>user</role></user></users>', ALL),
    ("users-colon-in-name", '<users><user name="a:b"/></users>', NONE),
    ("users-duplicate-name", '<users><user name="a"/><user name="a"/></users>', NONE),
    ("users-unknown-role", '<users><user name="a"><role>root</role></user></users>', NONE),
    ("identities-six", _identities(6, "<active>true</active><port>5061</port><transport>tls</transport>"),
     ALL),
    ("identities-five", _identities(5), NONE),
    ("identities-seven", _identities(7), NONE),
    ("identities-port-0", _identities(6, "<port>0</port>"), NONE),
    ("identities-port-65536", _identities(6, "<port>65536</port>"), NONE),
    ("identities-transport-sctp", _identities(6, "<transport>sctp</transport>"), NONE),
    ("keys-40-phoneXtensions", _keys("phoneXtensions", 40), ALL),
    ("keys-41-phoneXtensions", _keys("phoneXtensions", 41), NONE),
    ("keys-60-extensionModule3", _keys("extensionModule3", 60), ALL),
    ("keys-61-extensionModule2", _keys("extensionModule2", 61), NONE),
    ("keys-unknown-container", _keys("extensionModule4", 1), NONE),
    ("keys-duplicate-keyNumber",
     '<keys><extensionModule1><key keyNumber="3"/><key keyNumber="3"/></extensionModule1></keys>', NONE),
    ("keys-same-keyNumber-two-containers",
     '<keys><phoneXtensions><key keyNumber="3"/></phoneXtensions>'
     '<extensionModule1><key keyNumber="3"/></extensionModule1></keys>', ALL),
    ("keys-keyNumber-0", '<keys><phoneXtensions><key keyNumber="0"/></phoneXtensions></keys>', NONE),
    ("keys-without-keyNumber", '<keys><phoneXtensions><key label="x"/></phoneXtensions></keys>', NONE),
    ("keys-template-reference",
     '<keys><phoneXtensions><key keyNumber="1" label="@string/speeddial" info="i" icon="@drawable/x">'
     '<templateName>Speeddial</templateName><parameters><parameter name="@string/uri" value="**21"/>'
     '<parameter name="@string/identity"/></parameters></key></phoneXtensions></keys>', ALL),
    ("keys-opaque-configuration",
     '<keys><phoneXtensions><key keyNumber="2"><keyConfiguration>text<function a="1"><anything/></function>'
     "<reactions/></keyConfiguration></key></phoneXtensions></keys>", ALL),
    ("templates-duplicate-name", '<templates><template name="t"/><template name="t"/></templates>', NONE),
    ("templates-parameter-without-path",
     '<templates><template name="t"><parameters><parameter name="p"/></parameters></template></templates>',
     NONE),
    ("templates-prio-not-integer", '<templates><template name="t" prio="high"/></templates>', NONE),
    ("luaLibraries-duplicate-name",
     '<luaLibraries><luaLibrary name="m"/><luaLibrary name="m"/></luaLibraries>', NONE),
    ("contactList-full-contact", CONTACT, ALL),
    ("contactList-number-with-space",
     _contact("<phoneNumbers><phoneNumber>0531 1</phoneNumber></phoneNumbers>"), NONE),
    ("contactList-number-type-pager",
     _contact('<phoneNumbers><phoneNumber type="pager">1</phoneNumber></phoneNumbers>'), NONE),
    ("contactList-starred-2", _contact("<starred>2</starred>"), NONE),
    # libxml2 skips characters outside the base64 alphabet ("!!!" passes), so the bad value is a bad length.
    ("contactList-photo-not-base64", _contact("<photo>abc</photo>"), NONE),
    ("contactList-duplicate-id", '<contactList><contact id="c"/><contact id="c"/></contactList>', NONE),
    ("contactList-without-id", "<contactList><contact/></contactList>", NONE),
]


@pytest.mark.parametrize(("document", "expected"), [pytest.param(*i[1:], id=i[0]) for i in INSTANCES])
def test_instance_is_valid_in_exactly_the_expected_versions(document: str, expected: frozenset[str]) -> None:
    element = _parse(document.encode())
    assert _valid_versions(str(element.tag), element) == expected


REFERENCES_AND_OPERATIONS: list[tuple[str, str, bool]] = [
    # (id, document, valid); the root element picks the schema
    ("references-url-and-URL",
     "<referencedSettings><url>common.xml</url><URL> https://p.example/&lt;MACADR&gt;.xml </URL>"
     "<url>/d/{mac}.xml</url></referencedSettings>", True),
    ("references-empty", "<referencedSettings/>", False),
    ("references-blank-url", "<referencedSettings><url> </url></referencedSettings>", False),
    ("references-other-child", "<referencedSettings><link>a.xml</link></referencedSettings>", False),
    ("operations-mix",
     _ops('<delete path="/keys/phoneXtensions/key[@keyNumber=\'3\']"/>'
          '<replace path="/telephony/callWaiting/active"><active>false</active></replace>'
          '<add path="/keys/phoneXtensions"><key keyNumber="4"/><key keyNumber="5"/></add>'
          '<delete path="/users/user[@name=\'anna\']/"/>'), True),
    ("operations-empty", "<operations/>", False),
    ("operations-delete-without-path", _ops("<delete/>"), False),
    ("operations-delete-with-content", _ops('<delete path="/keys"><keys/></delete>'), False),
    ("operations-replace-two-children", _ops('<replace path="/keys"><a/><b/></replace>'), False),
    ("operations-replace-no-child", _ops('<replace path="/keys"/>'), False),
    ("operations-add-no-child", _ops('<add path="/keys"/>'), False),
    ("operations-unknown", _ops('<insert path="/keys"><a/></insert>'), False),
]
SCHEMA_OF_ROOT = {"referencedSettings": "provisioning_references.xsd", "operations": "operations.xsd"}


@pytest.mark.parametrize(
    ("document", "valid"), [pytest.param(*i[1:], id=i[0]) for i in REFERENCES_AND_OPERATIONS]
)
def test_reference_and_operations_documents(document: str, valid: bool) -> None:
    element = _parse(document.encode())
    assert _is_valid(_xsd_path(SCHEMA_OF_ROOT[str(element.tag)]), element) is valid


# --- migrations ------------------------------------------------------------------------------------------

MIGRATIONS = list(itertools.pairwise(VERSIONS))


def _migration(old: str, new: str) -> etree._Element:
    return _parse((SCHEMAS / "migrations" / f"{old}_{new}.xml").read_bytes())


def test_one_migration_per_consecutive_pair() -> None:
    assert sorted(p.name for p in (SCHEMAS / "migrations").glob("*.xml")) == sorted(
        f"{old}_{new}.xml" for old, new in MIGRATIONS
    )


@pytest.mark.parametrize(("old", "new"), MIGRATIONS)
def test_migration_is_well_formed_and_every_step_has_a_note(old: str, new: str) -> None:
    root = _migration(old, new)
    assert root.tag == "migration"
    assert (root.get("from"), root.get("to")) == (old, new)
    names = [section.get("name") for section in _elements(root)]
    assert all(section.tag == "section" for section in _elements(root))
    assert len(names) == len(set(names))
    assert set(names) <= set(SECTIONS)
    steps = [step for section in _elements(root) for step in _elements(section)]
    assert steps
    for step in steps:
        assert step.tag in STEP_KINDS, step.tag
        assert set(step.attrib) == set(STEP_KINDS[step.tag]), f"{step.tag} at line {step.sourceline}"
        notes = _elements(step)
        assert [n.tag for n in notes] == ["note"], f"{step.tag} at line {step.sourceline}"
        assert (notes[0].text or "").strip(), f"empty note at line {notes[0].sourceline}"


def test_migrations_hold_the_required_kinds_of_step() -> None:
    kinds = {step.tag for old, new in MIGRATIONS for section in _elements(_migration(old, new))
             for step in _elements(section)}
    assert kinds == set(STEP_KINDS)


def _select(root: etree._Element, path: str) -> list[etree._Element]:
    nodes = [root]
    if path != ".":
        for name in path.split("/"):
            nodes = [child for node in nodes for child in _elements(node) if name in ("*", child.tag)]
    return nodes


def _child(parent: etree._Element, name: str) -> etree._Element | None:
    return next((child for child in _elements(parent) if child.tag == name), None)


def _detach(node: etree._Element) -> None:
    parent = node.getparent()
    assert parent is not None
    parent.remove(node)


def _apply_step(root: etree._Element, step: etree._Element) -> None:
    """A test oracle of the step semantics written at the top of each migration file (not provd's code)."""
    if step.tag == "rename":
        for node in _select(root, step.get("path", "")):
            node.tag = step.get("to", "")
    elif step.tag == "add":
        name = step.get("name", "")
        for parent in _select(root, step.get("parent", "")):
            if _child(parent, name) is None:
                etree.SubElement(parent, name).text = step.get("default")
    elif step.tag == "remove":
        for node in _select(root, step.get("path", "")):
            _detach(node)
    elif step.tag == "move":
        *containers, name = step.get("to", "").split("/")
        for node in _select(root, step.get("path", "")):
            _detach(node)
            parent = root
            for container in containers:
                found = _child(parent, container)
                parent = found if found is not None else etree.SubElement(parent, container)
            node.tag = name
            existing = _child(parent, name)
            if existing is None:
                parent.append(node)
            else:
                parent.replace(existing, node)
    else:
        raise AssertionError(step.tag)


def _migrate(section: etree._Element, old: str, new: str) -> etree._Element:
    result = copy.deepcopy(section)
    for steps in _migration(old, new):
        if isinstance(steps.tag, str) and steps.get("name") == result.tag:
            for step in _elements(steps):
                _apply_step(result, step)
    result.set("version", new)
    return result


@pytest.mark.parametrize(
    ("section", "document", "start"),
    [
        pytest.param("provisioning", PROVISIONING_1_8_8, "1.8.8", id="provisioning-1.8.8"),
        pytest.param("telephony", TELEPHONY_1_8_8, "1.8.8", id="telephony-1.8.8"),
        pytest.param("telephony", '<telephony><callWaitingTone>true</callWaitingTone></telephony>', "1.8.8",
                     id="telephony-1.8.8-tone-only"),
        pytest.param("users", USERS_1_8_8, "1.8.8", id="users-1.8.8"),
        pytest.param("users", USERS_1_26_11, "1.26.11", id="users-1.26.11"),
    ],
)
def test_migration_steps_lead_to_the_next_xsd(section: str, document: str, start: str) -> None:
    element = _parse(document.encode())
    assert _valid_versions(section, element) >= {start}
    for old, new in MIGRATIONS[VERSIONS.index(start):]:
        element = _migrate(element, old, new)
        assert _is_valid(_xsd_path(section, new), element), f"{section} after {old} -> {new}"


def test_provisioning_migration_keeps_the_values() -> None:
    element = _migrate(_parse(PROVISIONING_1_8_8.encode()), "1.8.8", "1.26.11")
    assert element.xpath("sip/allowlist/allowlistEntry/text()") == ["192.168.0.200", "pbx.example"]
    assert element.findtext("pbx") == "false"
    telephony = _migrate(_parse(TELEPHONY_1_8_8.encode()), "1.8.8", "1.26.11")
    assert telephony.findtext("callWaiting/tone") == "false"
    assert telephony.find("callWaitingTone") is None
