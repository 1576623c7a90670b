"""The repository stands on its own: a fresh clone has everything its tests, docs and code refer to.

No file points at documents or data outside the repository, every relative link in the README and docs/
resolves, every "docs/….md §N" citation names a section that exists, and the third-party test data is
byte for byte what its SHA256SUMS pins.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
DOCS = ("design", "format", "protocols")

# Built from pieces so that this file does not match itself.
_SHARED = "sha" + "red"
FORBIDDEN = [
    pytest.param(re.compile(rb"\.\./" + _SHARED.encode() + rb"(?![\w.-])"), id="dotdot-shared"),
    pytest.param(re.compile(re.escape(f"/{_SHARED}/".encode())), id="slash-shared-slash"),
    pytest.param(re.compile(rb"/\s*[\"']" + _SHARED.encode() + rb"[\"']"), id="path-join-shared"),
    pytest.param(re.compile(re.escape(("DESI" + "GN.md").encode())), id="design-md"),
    pytest.param(re.compile(re.escape(("DESI" + "GN §").encode())), id="design-section"),
    pytest.param(re.compile(rb"\b" + ("DESI" + "GN").encode() + rb"\b"), id="design-word"),  # a bare citation too
    pytest.param(re.compile(rb"(?<![\w/])" + re.escape(("FORMAT" + ".md").encode())), id="format-md"),
    pytest.param(re.compile(rb"(?<![\w/])" + re.escape(("PROTOCOLS" + ".md").encode())), id="protocols-md"),
]


def repository_files() -> list[Path]:
    """Tracked files plus new ones git would add (so a reference is caught before it is committed)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout
    paths = {REPO / name for name in listed.decode().split("\0") if name}
    return sorted(p for p in paths if p.is_file() and not p.is_symlink())


def test_repository_files_are_listed() -> None:
    names = {p.relative_to(REPO).as_posix() for p in repository_files()}
    assert {"README.md", "docs/design.md", "tests/conftest.py", "tests/data/README.md"} <= names


@pytest.mark.parametrize("pattern", FORBIDDEN)
def test_no_file_refers_outside_the_repository(pattern: re.Pattern[bytes]) -> None:
    hits = []
    for path in repository_files():
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.decode(errors='replace').strip()[:100]}")
    assert not hits, f"{len(hits)} references outside the repository:\n" + "\n".join(hits)


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), DATA / "README.md"]


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # an absolute URL or an anchor in the same file
        resolved = (doc.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(REPO) or not resolved.exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links that do not resolve in the repository: {broken}"


def doc_sections(name: str) -> set[str]:
    """The numbers of docs/<name>.md's headings: `## 4. …` → "4", `### 4.2 …` → "4.2"."""
    text = (REPO / "docs" / f"{name}.md").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", text, re.MULTILINE)}


_CITATION = re.compile(r"\b(design|format|protocols)\.md §(\d+(?:\.\d+)*)")


def test_citations_of_the_docs_name_existing_sections() -> None:
    sections = {name: doc_sections(name) for name in DOCS}
    wrong = []
    for path in repository_files():
        if path.is_relative_to(DATA / "sip-torture") or path.suffix in {".dat", ".db"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in _CITATION.finditer(text):
            number = m.group(2).rstrip(".")
            if number not in sections[m.group(1)]:
                wrong.append(f"{path.relative_to(REPO)}: {m.group(0)}")
    assert not wrong, "citations of sections that do not exist:\n" + "\n".join(wrong)


def test_design_keeps_the_contract_numbering() -> None:
    """Code cites the design by number; these twelve sections must stay where they are."""
    titles = re.findall(r"^## (\d+)\. (.+)$", (REPO / "docs" / "design.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert [int(n) for n, _ in titles] == list(range(1, 13))


DATA_SETS = sorted(p.parent for p in DATA.glob("*/SHA256SUMS"))


def test_both_data_sets_are_pinned() -> None:
    assert [p.name for p in DATA_SETS] == ["sip-torture", "vendor-examples"]


@pytest.mark.parametrize("folder", DATA_SETS, ids=lambda p: p.name)
def test_data_matches_its_sha256sums(folder: Path) -> None:
    pinned: dict[str, str] = {}
    for line in (folder / "SHA256SUMS").read_text(encoding="ascii").splitlines():
        digest, name = line.split(maxsplit=1)
        pinned[name.lstrip("*")] = digest
    present = {p.name for p in folder.iterdir() if p.name not in {"SHA256SUMS", ".gitattributes", "README.md"}}
    assert present == set(pinned), "files not pinned, or pinned and missing"
    changed = [name for name, digest in pinned.items()
               if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest]
    assert not changed, f"changed since they were copied: {changed}"
