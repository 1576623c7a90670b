"""Hostile and broken provisioning files (tests/hostile/) against the real CLI: each is refused with a
`provd: error:` line naming the file (an xi:include child of a section is dropped unexpanded, with a
warning), never a traceback, quickly (no entity expansion), and the store is byte-for-byte what it was.
The table below says what each file exercises; every file must be in it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest

from tests.support.cli import Provd
from tests.support.paths import VENDOR

HOSTILE = Path(__file__).resolve().parents[1] / "hostile"
MUSIC = VENDOR / "music.xml"
SECONDS = 5.0  # entity bombs must not expand: every run is an ordinary short run
KILL_AFTER = 2 * SECONDS  # a run that hangs is stopped here and fails the test, rather than stalling the suite


class Apply(Enum):
    REFUSED = "refused"  # exit 1, an error line naming the file
    DROPPED = "dropped"  # exit 0: the unknown element is dropped with a warning naming the file (docs/design.md §5)


@dataclass(frozen=True)
class Case:
    file: str
    exercises: str
    apply: Apply = Apply.REFUSED
    # `provd validate` is offline (docs/design.md §2, §4): an operations file is checked against operations.xsd and
    # for XPath errors, a reference file against its own schema. What a path selects (nothing, an attribute,
    # text, several elements, the section root) is found when it meets the settings, so only `apply` can
    # refuse those; they say validate_fails=False, as does a well-formed reference file. None: either
    # answer is right (how provd gets the file refused decides whether validate can see it).
    validate_fails: bool | None = True


CASES = [
    # --- DTDs and entities: refused before parsing (docs/design.md §4) ---
    Case("xxe_local_file.xml", "XXE: external entity to file:///etc/passwd used in a leaf"),
    Case("xxe_http_localhost.xml", "XXE: external entity over http to 127.0.0.1"),
    Case("external_dtd.xml", "DOCTYPE with an external DTD (SYSTEM http://127.0.0.1)"),
    Case("billion_laughs.xml", "billion laughs: 10^9 'lol' from nested internal entities"),
    Case("quadratic_blowup.xml", "quadratic blow-up: a 20 kB entity referenced 2000 times"),
    Case("doctype_plain.xml", "a bare <!DOCTYPE keys> without internal subset"),
    Case("doctype_after_comment_and_pi.xml", "lower-case <!doctype> after a comment and a PI in the prolog"),
    Case("parameter_entities.xml", "internal subset with parameter entities (out-of-band exfiltration)"),
    Case("utf16_without_bom_doctype.xml", "XXE in UTF-16LE without BOM: the DOCTYPE is invisible to a "
         "byte scan for ASCII '<!DOCTYPE'"),
    Case("utf7_doctype.xml", "DOCTYPE hidden in UTF-7 (+ADw-!DOCTYPE), declared encoding UTF-7"),
    Case("undeclared_entity.xml", "an entity reference (&xxe;) with no DOCTYPE at all"),
    # --- XInclude: never expanded ---
    Case("xinclude_in_section.xml", "xi:include of /etc/passwd as a child of <contactList>: an unknown "
         "element, dropped unexpanded", apply=Apply.DROPPED, validate_fails=False),
    # --- not well-formed / not decodable ---
    Case("deep_nesting.xml", "320 nested elements inside an opaque keyConfiguration (libxml2 limit 256)"),
    Case("empty.xml", "an empty file (0 bytes)"),
    Case("whitespace_only.xml", "whitespace only"),
    Case("declaration_only.xml", "an XML declaration and nothing else"),
    Case("truncated.xml", "a document cut off inside a leaf"),
    Case("trailing_garbage.xml", "a second root element after the first"),
    Case("binary_garbage.bin", "512 random bytes"),
    Case("invalid_utf8.xml", "invalid UTF-8 bytes in a leaf of a file declared utf-8"),
    Case("klingon_invalid_utf8.xml", "unknown encoding 'klingon' (read as UTF-8) with bytes that are not UTF-8"),
    Case("declared_utf16_but_ascii.xml", "declared UTF-16, bytes are ASCII"),
    Case("utf16_without_bom.xml", "UTF-16LE without a byte order mark (XML 1.0 §4.3.3: UTF-16 MUST begin "
         "with one)"),
    Case("overlong_utf8.xml", "overlong UTF-8 for '<' and '>' (C0 BC, C0 BE), a classic filter bypass"),
    Case("nul_byte.xml", "a raw NUL byte in a leaf"),
    Case("char_ref_nul.xml", "&#0; in a leaf"),
    Case("xml11_control_char.xml", "version 1.1 with &#1;, which XML 1.0 (and the store) cannot hold"),
    # --- wrong file type ---
    Case("wrong_root.xml", "root <settings>: no file type, no section"),
    Case("namespaced_root.xml", "<configuration> in a default namespace"),
    Case("prefixed_root.xml", "<p:keys> with a prefix"),
    Case("reference_file.xml", "a reference file: valid, but apply (restore backup) must refuse it",
         validate_fails=False),
    # --- settings patches that fail their schema ---
    Case("patch_wrong_type_keynumber.xml", "keyNumber='abc' where xs:positiveInteger is required"),
    Case("patchdefault_maybe.xml", "patchDefault='maybe' on <configuration>"),
    Case("section_patch_maybe.xml", "patch='maybe' on a section"),
    Case("unknown_section.xml", "<frobnicator> inside <configuration>"),
    Case("identities_replace_three.xml", "identities replaced (patch=false) with only 3 of the 6 identities"),
    Case("duplicate_keynumber_replace.xml", "two keys with keyNumber 5 in a replace patch"),
    Case("cdata_in_integer_leaf.xml", "CDATA-wrapped garbage in the integer leaf identity/port"),
    Case("too_many_keys.xml", "41 phoneXtensions keys where the XSD allows 40"),
    # --- operations files ---
    Case("ops_bad_xpath_syntax.xml", "XPath syntax error (unclosed predicate)"),
    Case("ops_unknown_function.xml", "XPath calling an unknown function evil()"),
    Case("ops_unbound_variable.xml", "XPath with an unbound variable $n"),
    Case("ops_number_xpath.xml", "XPath that mixes a node-set and a number in a union"),
    Case("ops_attribute_xpath.xml", "delete of an attribute path .../key/@label", validate_fails=False),
    Case("ops_text_xpath.xml", "delete of .../code/text()", validate_fails=False),
    Case("ops_selects_nothing.xml", "delete of a key that does not exist", validate_fails=False),
    Case("ops_replace_selects_several.xml", "replace whose path selects 20 keys",
         validate_fails=False),
    Case("ops_replace_two_children.xml", "replace with two new elements (operations.xsd allows one)"),
    Case("ops_descendant_first_step.xml", "path //key: the first step names no section"),
    Case("ops_unknown_operation.xml", "<rename>, an operation that does not exist"),
    Case("ops_empty.xml", "<operations/> with no operation"),
    Case("ops_unknown_section.xml", "operations on section /frobnicator"),
    Case("ops_delete_section_root.xml", "delete of the section root /keys", validate_fails=False),
    Case("ops_replace_root_with_other_section.xml", "replace of /keys by <users/>",
         validate_fails=False),
    Case("ops_second_fails_discards_first.xml", "a valid delete, then one selecting nothing: both discarded",
         validate_fails=False),
    Case("ops_xpath_cpu_bomb.xml", "294 bytes of XPath: 7 nested predicates over preceding::*, ~n^7 steps "
         "(minutes on 164 nodes) where the vendor's paths are plain child steps", validate_fails=None),
    Case("ops_result_invalid.xml", "add of a key with keyNumber='abc': the section is invalid afterwards",
         validate_fails=False),
]


@dataclass(frozen=True)
class Seeded:
    """A store that holds real settings (the vendor's music.xml), and its backup."""

    state: Path
    backup: str


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    root = tmp_path_factory.mktemp("seeded")
    provd = _provd(root / "provd.yaml", root / "state")
    provd.run("apply", str(MUSIC), check=0)
    return Seeded(provd.state, provd.backup())


def _provd(config: Path, state: Path, extra: str = "") -> Provd:
    config.write_text(f"paths: {{state_dir: {state}, runtime_dir: {state.parent / 'run'}}}\n{extra}")
    return Provd(config, state)


def _copy_of(seeded: Seeded, tmp_path: Path, extra: str = "") -> Provd:
    shutil.copytree(seeded.state, tmp_path / "state")
    return _provd(tmp_path / "provd.yaml", tmp_path / "state", extra)


def _run(provd: Provd, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run provd (no traceback allowed: the fixture's run() checks) and time it; a hang fails the test."""
    started = time.monotonic()
    try:
        proc = provd.run(*args, timeout=KILL_AFTER)
    except subprocess.TimeoutExpired:
        pytest.fail(f"provd {' '.join(args)} did not finish in {KILL_AFTER:.0f} s (killed)")
    return proc, time.monotonic() - started


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("provd: error: ")]


def _one_line_each(stderr: str) -> bool:
    """Every error and warning is one line: no line of stderr that does not start as one of them."""
    return all(line.startswith(("provd: error: ", "provd: warning: ")) for line in stderr.splitlines())


def test_every_corpus_file_is_in_the_table() -> None:
    on_disk = sorted(p.name for p in HOSTILE.iterdir())
    assert sorted(c.file for c in CASES) == on_disk


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_apply_hostile_file_leaves_store_unchanged(case: Case, seeded: Seeded, tmp_path: Path) -> None:
    provd = _copy_of(seeded, tmp_path)
    proc, elapsed = _run(provd, "apply", str(HOSTILE / case.file))
    assert elapsed < SECONDS, f"apply took {elapsed:.1f} s"
    assert _one_line_each(proc.stderr), proc.stderr
    if case.apply is Apply.REFUSED:
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert any(case.file in line for line in _errors(proc.stderr)), proc.stderr
    else:
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert not _errors(proc.stderr), proc.stderr
        assert any(line.startswith("provd: warning: ") and case.file in line and "include" in line
                   for line in proc.stderr.splitlines()), proc.stderr
    assert provd.backup() == seeded.backup


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_validate_hostile_file(case: Case, seeded: Seeded, tmp_path: Path) -> None:
    provd = _copy_of(seeded, tmp_path)
    proc, elapsed = _run(provd, "validate", str(HOSTILE / case.file))
    assert elapsed < SECONDS, f"validate took {elapsed:.1f} s"
    assert _one_line_each(proc.stderr), proc.stderr
    if case.validate_fails is None:
        assert proc.returncode in (0, 1), (proc.stdout, proc.stderr)
    elif case.validate_fails:
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert any(case.file in line for line in _errors(proc.stderr)), proc.stderr
    else:
        assert proc.returncode == 0, (proc.stdout, proc.stderr)


def _padded_patch(size: int) -> bytes:
    """A valid one-contact patch, padded with trailing whitespace (allowed after the root) to `size` bytes."""
    body = (b'<?xml version="1.0" encoding="utf-8"?>\n<contactList version="1.34.0"><contact id="big">'
            b"<displayName>Big</displayName></contact></contactList>\n")
    return body + b" " * (size - len(body))


def test_oversized_file_is_refused_before_parsing(seeded: Seeded, tmp_path: Path) -> None:
    provd = _copy_of(seeded, tmp_path)
    path = tmp_path / "oversized.xml"
    path.write_bytes(_padded_patch(4194304 + 1))  # the default http.max_file_bytes, plus one
    for command in ("apply", "validate"):
        proc, elapsed = _run(provd, command, str(path))
        assert elapsed < SECONDS, f"{command} took {elapsed:.1f} s"
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert any(path.name in line for line in _errors(proc.stderr)), proc.stderr
    assert provd.backup() == seeded.backup


def test_size_limit_is_inclusive(seeded: Seeded, tmp_path: Path) -> None:
    provd = _copy_of(seeded, tmp_path, extra="http: {max_file_bytes: 4096}\n")
    over = tmp_path / "over.xml"
    over.write_bytes(_padded_patch(4097))
    provd.run("apply", str(over), check=1)
    assert provd.backup() == seeded.backup
    exact = tmp_path / "exact.xml"
    exact.write_bytes(_padded_patch(4096))
    provd.run("apply", str(exact), check=0)
    assert 'contact id="big"' in provd.run("show", "contactList", check=0).stdout


def test_xinclude_in_opaque_configuration_is_stored_unexpanded(seeded: Seeded, tmp_path: Path) -> None:
    """keyConfiguration is opaque (xs:any, skip): an xi:include there is kept as an element, never followed."""
    provd = _copy_of(seeded, tmp_path)
    path = tmp_path / "xinclude_key.xml"
    path.write_text('<keys><phoneXtensions><key keyNumber="3" label="x"><keyConfiguration>'
                    '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" '
                    'parse="text"/></keyConfiguration></key></phoneXtensions></keys>\n', encoding="utf-8")
    provd.run("apply", str(path), check=0)
    keys = provd.run("show", "keys", check=0).stdout
    assert 'href="file:///etc/passwd"' in keys
    assert "root:" not in keys


@pytest.mark.parametrize("command", ["validate", "apply"])
def test_nul_byte_error_is_exactly_one_line(command: str, seeded: Seeded, tmp_path: Path) -> None:
    """libxml2's `Char 0x0 out of allowed range\\n, line 3, column 35` printed a second stderr line."""
    provd = _copy_of(seeded, tmp_path)
    proc, _ = _run(provd, command, str(HOSTILE / "nul_byte.xml"))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("provd: error: "), proc.stderr
    assert "0x0" in proc.stderr and "line 3" in proc.stderr
    assert provd.backup() == seeded.backup


@pytest.mark.parametrize("codec", ["zlib", "rot13", "base64", "hex", "bz2", "uu", "punycode", "idna"])
def test_validate_codec_that_is_no_text_encoding(codec: str, seeded: Seeded, tmp_path: Path) -> None:
    """`encoding="zlib"` ended in a LookupError traceback: it is an unknown encoding (docs/design.md §4), read as
    UTF-8 with one warning naming it, and the file then validates like any other."""
    provd = _copy_of(seeded, tmp_path)
    path = tmp_path / f"{codec}.xml"
    path.write_text(f'<?xml version="1.0" encoding="{codec}"?>\n<keys><phoneXtensions><key keyNumber="3" '
                    'label="caf\u00e9"/></phoneXtensions></keys>\n', encoding="utf-8")
    proc, _ = _run(provd, "validate", str(path))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    (warning,) = proc.stderr.splitlines()
    assert warning.startswith("provd: warning: ") and repr(codec) in warning
    proc, _ = _run(provd, "apply", str(path))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert 'label="caf\u00e9"' in provd.run("show", "keys", check=0).stdout


def _notify(uri: str, length: str) -> bytes:
    return (f"NOTIFY {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n"
            f"From: <sip:pbx@192.0.2.10>;tag=1\r\nTo: <sip:201@10.0.0.50>\r\nCall-ID: cs1\r\n"
            f"CSeq: 1 NOTIFY\r\nEvent: check-sync\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize(("uri", "length"), [
    pytest.param("sip:201@10.0.0.50", "\u2460", id="content-length-circled-one"),
    pytest.param("*", "0", id="request-uri-asterisk"),
])
def test_check_sync_malformed_notify_is_answered_400(uri: str, length: str, seeded: Seeded,
                                                     tmp_path: Path) -> None:
    provd = _copy_of(seeded, tmp_path)
    proc = provd.run("check-sync", "--source", "192.0.2.10", stdin=_notify(uri, length), check=1)
    assert proc.stdout.startswith("SIP/2.0 400 "), proc.stdout
    assert _one_line_each(proc.stderr), proc.stderr
    assert provd.backup() == seeded.backup
