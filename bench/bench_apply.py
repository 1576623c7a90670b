"""Benchmark of the offline CLI against its targets: cold start of `provd --help`, peak RSS and wall time of
`provd apply` of a 10,000-contact contactList, next to a raw in-process lxml parse + XSD validation of the
same file. A script, not a test: it measures and prints a table, and never fails on a missed target.

    .venv/bin/python bench/bench_apply.py
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lxml import etree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchlib import Row, compile_bytecode  # noqa: E402 - bench/ is the script's own directory
from tests.support.contacts import contact_list_xml  # noqa: E402 - test data generator, shared with the crash test

XSD = REPO / "schemas" / "settings" / "contactList" / "1.34.0.xsd"
CONTACTS = 10_000
COLD_RUNS = 20
APPLY_RUNS = 5
TIME_V = Path("/usr/bin/time")




def provd_argv() -> list[str]:
    """The console script next to this interpreter (as a user runs it), else `python -m provd`."""
    script = Path(sys.executable).parent / "provd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "provd"]


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


class Workspace:
    """A base store (factory defaults) and the config to run provd on fresh copies of it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "base"
        self._copies = 0
        self._run(self.config_for(self.base), "backup")  # creates the store

    def config_for(self, state: Path) -> Path:
        config = state.with_suffix(".yaml")
        config.write_text(f"paths: {{state_dir: {state}, runtime_dir: {self.root / 'run'}}}\n"
                          "http: {max_file_bytes: 67108864}\n")
        return config

    def fresh(self) -> Path:
        """The config of a new copy of the base store."""
        self._copies += 1
        state = self.root / f"copy{self._copies}"
        shutil.copytree(self.base, state)
        return self.config_for(state)

    @staticmethod
    def _run(config: Path, *args: str) -> None:
        subprocess.run([*provd_argv(), "--config", str(config), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def peak_rss_mib(argv: list[str]) -> tuple[float, str]:
    """Peak RSS of `argv` (and its children) in MiB, and how it was measured."""
    if TIME_V.exists():
        proc = subprocess.run([str(TIME_V), "-v", *argv], check=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        if match:
            return int(match.group(1)) / 1024, "/usr/bin/time -v"
    # RUSAGE_CHILDREN is the maximum over every child waited for so far: run this before anything larger.
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "getrusage(RUSAGE_CHILDREN)"


def raw_lxml(path: Path, out: Path) -> float:
    """Read, parse, validate against the contactList XSD, and write + fsync the same bytes, in this process:
    the floor for one durable apply (durability is part of the job, so the baseline pays it too)."""
    started = time.perf_counter()
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    data = path.read_bytes()
    doc = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    if not schema.validate(doc):
        raise SystemExit(f"{path}: the generated contacts do not validate: {schema.error_log}")
    with out.open("wb") as fh:
        fh.write(etree.tostring(doc, encoding="utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - started


def phases(config: Path, path: Path) -> dict[str, float]:
    """Where one apply's time goes, in this process: the same functions `provd apply` calls, timed one by
    one (a fresh store copy each time; interpreter start-up and imports are the rest of the wall time)."""
    from provd import config as config_mod
    from provd.core.documents import parse_document
    from provd.model import RunReport, Trigger
    from provd.settings.apply import apply_document
    from provd.settings.phone import PhoneSettings
    from provd.settings.working_copy import WorkingCopy
    from provd.transport.files import read_capped

    times: dict[str, float] = {}

    def timed(name: str, step: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = step()
        times[name] = time.perf_counter() - started
        return result

    settings = PhoneSettings(config_mod.load(str(config)))
    catalog = settings.catalog
    try:
        max_bytes = settings.config.http.max_file_bytes
        doc = timed("read + parse patch", lambda: parse_document(read_capped(path, max_bytes), source=str(path),
                                                                 max_bytes=max_bytes, sections=catalog.sections))
        store = timed("open store (quick_check)", lambda: settings.store)
        wc = WorkingCopy(settings.catalog, settings.store.section)
        timed("load + parse stored section", lambda: wc.get("contactList"))
        changes = timed("merge + validate", lambda: apply_document(settings.catalog, wc, doc))  # type: ignore[arg-type]
        assert changes
        timed("  of which validate (again)",
              lambda: catalog.schema("contactList", catalog.current("contactList")).issues(wc.get("contactList")))
        changed = timed("serialise + compare", wc.changed)
        report = RunReport(trigger=Trigger.APPLY, started="")
        timed("SQLite commit (write + fsync)",
              lambda: store.commit(changed, trigger=Trigger.APPLY, source="bench", report=report.to_json(),  # type: ignore[attr-defined]
                                   read_at=wc.read_at))
    finally:
        settings.close()
    return times


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cpus = len(os.sched_getaffinity(0))
    return (f"machine: {platform.node()} {platform.machine()}, nproc {cpus}, load average {load}; "
            f"Python {platform.python_version()}, lxml {etree.__version__}, "
            f"libxml2 {'.'.join(map(str, etree.LIBXML_VERSION))}")


def main() -> int:
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="provd-bench-") as tmp:
        root = Path(tmp)
        merge = root / "contacts.xml"
        merge.write_bytes(contact_list_xml(CONTACTS))
        replace = root / "contacts-replace.xml"
        replace.write_bytes(contact_list_xml(CONTACTS, replace=True))
        size_mib = merge.stat().st_size / (1 << 20)
        ws = Workspace(root)
        provd = provd_argv()

        wall([*provd, "--help"])  # once untimed: byte-compiled files and page cache as on a running phone
        cold = median_of(COLD_RUNS, lambda: wall([*provd, "--help"]))
        rss, rss_how = peak_rss_mib([*provd, "--config", str(ws.fresh()), "apply", str(merge)])
        apply_merge = median_of(APPLY_RUNS, lambda: wall([*provd, "--config", str(ws.fresh()), "apply", str(merge)]))
        apply_replace = median_of(
            APPLY_RUNS, lambda: wall([*provd, "--config", str(ws.fresh()), "apply", str(replace)]))
        raw = median_of(APPLY_RUNS, lambda: raw_lxml(merge, root / "raw-out.xml"))
        runs = [phases(ws.fresh(), merge) for _ in range(APPLY_RUNS)]
        breakdown = {name: statistics.median(r[name] for r in runs) for name in runs[0]}

    ratio = apply_merge / raw
    rows = [
        Row(f"(a) cold start `provd --help`, median of {COLD_RUNS}", f"{cold * 1000:.0f} ms", "<= 100 ms",
            cold <= 0.100),
        Row(f"(b) peak RSS of apply ({rss_how})", f"{rss:.1f} MiB", "<= 60 MiB", rss <= 60),
        Row(f"(c) apply, merge patch, median of {APPLY_RUNS}", f"{apply_merge * 1000:.0f} ms", "<= 1 s",
            apply_merge <= 1.0),
        Row(f"    raw lxml parse + XSD compile/validate + write/fsync, median of {APPLY_RUNS}", f"{raw * 1000:.0f} ms",
            "", None),
        Row("    ratio apply / raw", f"{ratio:.2f}x", "<= 3x", ratio <= 3.0),
        Row(f"    apply, replace patch (patch=\"false\"), median of {APPLY_RUNS}", f"{apply_replace * 1000:.0f} ms",
            "", None),
    ]
    print(f"provd apply benchmark: {CONTACTS} contacts, {size_mib:.2f} MiB of XML; provd = {' '.join(provd)}")
    print(machine())
    width = max(len(r.what) for r in rows)
    print(f"{'measure':<{width}}  {'value':>9}  {'target':<9}  result")
    for r in rows:
        result = "" if r.met is None else ("ok" if r.met else "MISSED")
        print(f"{r.what:<{width}}  {r.value:>9}  {r.target:<9}  {result}")
    print(f"where apply's time goes (in-process, median of {APPLY_RUNS}; the rest is start-up and imports):")
    for name, seconds in breakdown.items():
        print(f"    {name:<{width - 4}}  {seconds * 1000:>6.0f} ms")
    print("wall times include interpreter start-up; a loaded machine (see load average) inflates them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
