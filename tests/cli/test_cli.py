"""The offline commands end to end, as a user runs them: `python -m provd --config CFG ...` on a real store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from lxml import etree

from tests.support.cli import Provd
from tests.support.paths import VENDOR, WriteFile
from tests.support.settings import xpath

VENDOR_FILES = sorted(p.name for p in VENDOR.glob("*.xml"))


def vendor_tree(name: str) -> etree._Element:
    data = (VENDOR / name).read_bytes().replace(b'encoding="utf=8"', b'encoding="utf-8"')
    return etree.fromstring(data)


def test_vendor_examples_are_all_here() -> None:
    assert len(VENDOR_FILES) == 6


@pytest.mark.parametrize("name", VENDOR_FILES)
def test_vendor_example_validates_and_applies(provd: Provd, name: str) -> None:
    result = provd.run("validate", str(VENDOR / name), check=0)
    assert "valid" in result.stdout
    provd.run("apply", str(VENDOR / name), check=0)
    shown = etree.fromstring(provd.run("show", check=0).stdout.encode())
    original = vendor_tree(name)
    for key in original.iter("key"):
        module = key.getparent()
        assert module is not None
        stored = xpath(shown, f"/configuration/keys/{module.tag}/key[@keyNumber='{key.get('keyNumber')}']")
        assert len(stored) == 1
        assert stored[0].get("label") == key.get("label")
        assert stored[0].findtext(".//code") == key.findtext(".//code")  # Lua text byte for byte
    for lib in original.iter("luaLibrary"):
        assert xpath(shown, f"//luaLibrary[@name='{lib.get('name')}']/code/text()") == [lib.findtext("code")]
    for template in original.iter("template"):
        stored_t = xpath(shown, f"//templates/template[@name='{template.get('name')}']")
        assert len(stored_t) == 1
        assert xpath(stored_t[0], "parameters/parameter/@name") == xpath(template, "parameters/parameter/@name")
        assert xpath(stored_t[0], ".//path/text()") == xpath(template, ".//path/text()")


def test_music_key_replaces_music_keys_whole(provd: Provd) -> None:
    for name in ("call_number.xml", "home_auto.xml", "music.xml", "silent_alert.xml", "music_key.xml"):
        provd.run("apply", str(VENDOR / name), check=0)
    keys = etree.fromstring(provd.run("show", "keys", check=0).stdout.encode())
    module = keys.find("extensionModule1")
    assert module is not None
    numbers = sorted(int(k.get("keyNumber", "0")) for k in module)
    assert numbers == [11, 13, *range(21, 41)]
    for key in vendor_tree("music_key.xml").iter("key"):
        stored = xpath(module, f"key[@keyNumber='{key.get('keyNumber')}']")[0]
        assert stored.findtext(".//code") == key.findtext(".//code")
        assert "require" not in (stored.findtext(".//code") or "")
    assert xpath(keys, "/keys/phoneXtensions/key/@keyNumber") == ["12"]


def test_backup_roundtrip_is_identical(provd: Provd, tmp_path: Path) -> None:
    for name in VENDOR_FILES:
        provd.run("apply", str(VENDOR / name), check=0)
    first = provd.backup()
    assert first == provd.backup()  # deterministic
    assert 'patchDefault="false"' in first.splitlines()[1]
    backup = tmp_path / "backup.xml"
    provd.run("backup", "-o", str(backup), check=0)
    assert backup.read_text() == first
    provd.run("apply", str(backup), check=0)
    assert provd.backup() == first
    sections = etree.fromstring(first.encode())
    assert all(s.get("version") == "1.34.0" for s in sections)


def test_backup_restores_on_another_phone(provd: Provd, tmp_path: Path) -> None:
    provd.run("apply", str(VENDOR / "music.xml"), check=0)
    backup = tmp_path / "b.xml"
    provd.run("backup", "-o", str(backup), check=0)
    other = Provd(tmp_path / "other.yaml", tmp_path / "other")
    other.config.write_text(f"paths: {{state_dir: {other.state}}}\n")
    other.run("apply", str(VENDOR / "call_number.xml"), check=0)
    other.run("apply", str(backup), check=0)
    assert other.backup() == provd.backup()


def test_reference_file_is_refused(provd: Provd, write: WriteFile) -> None:
    before = provd.backup()
    ref = write("ref.xml", "<referencedSettings><url>http://127.0.0.1:9/a.xml</url></referencedSettings>")
    result = provd.run("apply", str(ref), check=1)
    assert result.stderr.startswith("provd: error: ") and "ref.xml" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert provd.backup() == before


def test_show(provd: Provd) -> None:
    assert provd.run("show", "provisioning", check=0).stdout.startswith('<provisioning version="1.34.0">')
    result = provd.run("show", "network", check=1)
    assert result.stderr.startswith("provd: error: unknown section 'network'")


def test_apply_reports_rejected_section_and_keeps_others(provd: Provd, write: WriteFile) -> None:
    patch = write("p.xml", '<configuration><keys><phoneXtensions><key keyNumber="nope"/></phoneXtensions></keys>'
                           "<telephony><callWaiting><active>false</active></callWaiting></telephony></configuration>")
    result = provd.run("apply", "--json", str(patch), check=1)
    report = json.loads(result.stdout)
    assert report["outcome"] == "applied"
    assert report["sections_changed"] == ["telephony"]
    assert [(c["section"], c["action"]) for c in report["changes"]] == [("keys", "rejected"),
                                                                       ("telephony", "merged")]
    assert "<active>false</active>" in provd.run("show", "telephony", check=0).stdout


def test_unchanged_apply_commits_nothing(provd: Provd) -> None:
    provd.run("apply", str(VENDOR / "music.xml"), check=0)
    generations = len(json.loads(provd.run("history", "--json", check=0).stdout))
    result = provd.run("apply", str(VENDOR / "music.xml"), check=0)
    assert "unchanged" in result.stdout
    assert len(json.loads(provd.run("history", "--json", check=0).stdout)) == generations


def test_history_and_rollback(provd: Provd, write: WriteFile) -> None:
    provd.run("apply", str(VENDOR / "music.xml"), check=0)
    after_music = provd.backup()
    provd.run("apply", str(VENDOR / "music_key.xml"), check=0)
    history = json.loads(provd.run("history", "--json", check=0).stdout)
    assert [(h["generation"], h["trigger"], h["sections_changed"]) for h in history] == [
        (1, "factory", ["contactList", "identities", "keys", "luaLibraries", "provisioning", "telephony",
                        "templates", "users"]),
        (2, "apply", ["keys", "luaLibraries"]),
        (3, "apply", ["keys"]),
    ]
    provd.run("rollback", "2", check=0)
    assert provd.backup() == after_music
    history = json.loads(provd.run("history", "--json", check=0).stdout)
    assert (history[-1]["generation"], history[-1]["trigger"]) == (4, "rollback")
    assert provd.run("rollback", "99", check=1).stderr.startswith("provd: error: ")


def test_keeps_last_twenty_generations(provd: Provd, write: WriteFile) -> None:
    states = {}
    for i in range(25):
        patch = write(f"p{i}.xml", f"<provisioning><url>http://prov.example/{i}.xml</url></provisioning>")
        provd.run("apply", str(patch), check=0)
        states[i + 2] = provd.backup()
    history = json.loads(provd.run("history", "--json", check=0).stdout)
    numbers = [h["generation"] for h in history]
    assert numbers == list(range(7, 27))
    provd.run("rollback", "6", check=1)
    provd.run("rollback", "7", check=0)
    assert provd.backup() == states[7]


def test_corrupt_store_is_reported_and_left_alone(provd: Provd) -> None:
    provd.run("apply", str(VENDOR / "music.xml"), check=0)
    db = provd.state / "settings.db"
    raw = bytearray(db.read_bytes())
    raw[:100] = b"\x00" * 100
    db.write_bytes(bytes(raw))
    for extra in ("settings.db-wal", "settings.db-shm"):
        (provd.state / extra).unlink(missing_ok=True)
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    result = provd.run("show", check=1)
    assert result.stderr.startswith("provd: error: ") and "settings.db" in result.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


def test_validate_partial_patch_against_defaults(provd: Provd, write: WriteFile) -> None:
    good = write("good.xml", "<provisioning><url>https://prov.example/</url></provisioning>")
    bad = write("bad.xml", "<provisioning>\n<execution><time>25:00</time></execution></provisioning>")
    provd.run("validate", str(good), check=0)
    result = provd.run("validate", str(good), str(bad), check=1)
    assert "bad.xml:2" in result.stderr and "/provisioning/execution/time" in result.stderr
    report = json.loads(provd.run("validate", "--json", str(good), str(bad), check=1).stdout)
    assert [f["valid"] for f in report["files"]] == [True, False]


def test_validate_operations_and_reference(provd: Provd, write: WriteFile) -> None:
    ops = write("ops.xml", '<operations><delete path="/keys/phoneXtensions/key"/></operations>')
    bad_ops = write("bad-ops.xml", '<operations><delete path="/keys/[["/></operations>')
    ref = write("ref.xml", "<referencedSettings><url>common.xml</url><URL>{mac}.xml</URL></referencedSettings>")
    provd.run("validate", str(ops), str(ref), check=0)
    assert "bad-ops.xml" in provd.run("validate", str(bad_ops), check=1).stderr


def test_config_errors_name_the_key(provd: Provd, tmp_path: Path) -> None:
    provd.config.write_text(f"paths: {{state_dir: {tmp_path}}}\nhttp: {{max_file_byte: 3}}\n")
    result = provd.run("show", check=1)
    assert "http.max_file_byte" in result.stderr


def test_python_dash_m_and_help(provd: Provd) -> None:
    result = provd.run("--help", check=0)
    for command in ("validate", "apply", "backup", "show", "history", "rollback"):
        assert command in result.stdout


@pytest.mark.parametrize(("argv", "command"), [
    pytest.param(["status"], "status", id="plain"),
    pytest.param(["--config", "p.yaml", "-v", "start", "--url", "x"], "start", id="after-options"),
    pytest.param(["--config=p.yaml", "-q", "show", "keys"], "show", id="config-equals"),
    pytest.param(["--config", "status", "history"], "history", id="config-value-named-like-a-command"),
    pytest.param(["--help"], None, id="help-needs-all"),
    pytest.param(["-h", "status"], None, id="help-first"),
    pytest.param([], None, id="none"),
    pytest.param(["bogus"], None, id="unknown-lists-all"),
])
def test_only_the_named_subcommand_is_built(argv: list[str], command: str | None) -> None:
    from provd import cli

    assert cli._command_in(argv) == command
    if command is not None:  # the light parser reads the command line as the whole one does
        assert cli.build_parser(command).parse_args(argv) == cli.build_parser().parse_args(argv)
