"""The `provd` command line (docs/design.md §2): argument parsing, output, exit codes.

The only place that prints for users and the only place that exits. Human output goes to stdout,
diagnostics to stderr as one line each (`provd: error: …`, `provd: warning: …`), never a traceback for a
ProvdError. Heavy modules (lxml, yaml, sqlite3) load inside the command that needs them, so `provd --help`
stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from provd.errors import PreconditionsNotMet, ProvdError

if TYPE_CHECKING:
    from provd.config import Config
    from provd.core.control import (
        ApplyRequest,
        ConfirmEvent,
        ConfirmRequest,
        ReportEvent,
        RollbackEvent,
        RollbackRequest,
        StartRequest,
    )
    from provd.model import RunReport
    from provd.settings.phone import PhoneSettings
    from provd.sources.discovery import Discovery

_Final = TypeVar("_Final", "ReportEvent", "RollbackEvent", "ConfirmEvent")  # the event that ends a queued request


class _Out:
    def __init__(self, quiet: bool, verbose: bool) -> None:
        self.quiet = quiet
        self.verbose = verbose

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text)

    def warn(self, text: str) -> None:
        print(f"provd: warning: {text}", file=sys.stderr)

    def error(self, text: str) -> None:
        print(f"provd: error: {text}", file=sys.stderr)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` the top level and that one subcommand: each subparser costs
    argparse a handful of gettext look-ups (~1 ms), which `provd status` and `provd start` need not pay for
    the ten commands they are not."""
    p = argparse.ArgumentParser(prog="provd", description="Provisioning client of a COMfortel D-series class "
                                "SIP desk phone: finds, downloads and applies its settings.")
    p.add_argument("--config", metavar="PATH", help="configuration file (default $PROVD_CONFIG, then "
                   "/etc/provd/provd.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="more detail")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (text, arguments) in _SUBCOMMANDS.items():
        if only is None or name == only:
            arguments(sub.add_parser(name, help=text))
    return p


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names, when it names a known one (else None: the whole parser, for help and
    for the error that lists the commands)."""
    tokens = iter(argv)
    for token in tokens:
        if token in ("-h", "--help", "--"):
            return None
        if token == "--config":
            next(tokens, None)
        elif not token.startswith("-"):
            return token if token in _SUBCOMMANDS else None
    return None


def _validate_args(v: argparse.ArgumentParser) -> None:
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("--json", action="store_true")


def _apply_args(a: argparse.ArgumentParser) -> None:
    a.add_argument("file", metavar="FILE")
    a.add_argument("--json", action="store_true")


def _backup_args(b: argparse.ArgumentParser) -> None:
    b.add_argument("-o", "--output", metavar="FILE")


def _show_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("section", nargs="?", metavar="SECTION")


def _wait_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="give up waiting for network and valid time after this long (default: wait for ever)")


def _start_args(st: argparse.ArgumentParser) -> None:
    st.add_argument("--url", metavar="URL", help="provision from this URL (markers allowed), skipping discovery")
    st.add_argument("--dry-run", action="store_true", help="fetch and compute everything, commit nothing")
    st.add_argument("--force", action="store_true",
                    help="apply even documents that were rolled back after a failed health check (quarantined)")
    st.add_argument("--json", action="store_true", help="print the run report (docs/design.md §8)")
    _wait_arg(st)


def _discover_args(d: argparse.ArgumentParser) -> None:
    d.add_argument("--json", action="store_true")
    _wait_arg(d)


def _no_args(_p: argparse.ArgumentParser) -> None:
    pass


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def _check_sync_args(cs: argparse.ArgumentParser) -> None:
    cs.add_argument("--source", default="127.0.0.1", metavar="IP", help="the NOTIFY's sender (for the allowlist)")
    cs.add_argument("--port", type=int, default=5060, help=argparse.SUPPRESS)


def _rollback_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("generation", type=int, metavar="GENERATION")


# The subcommands in the order `provd --help` lists them: (help, the arguments they take).
_SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "validate": ("check provisioning files offline (type, XML, schema after migration)", _validate_args),
    "apply": ("apply a settings patch or operations file from disk (restore backup)", _apply_args),
    "backup": ("the whole configuration as a settings-patch file", _backup_args),
    "show": ("the current settings as XML", _show_args),
    "start": ("a provisioning run now: preconditions, discovery (or --url), fetch, apply", _start_args),
    "discover": ("preconditions and discovery only: each source tried, the URL that wins", _discover_args),
    "run": ("the daemon (systemd ExecStart): triggers, control socket, check-sync listener", _no_args),
    "status": ("daemon state, the last run's report, the next scheduled run", _json_arg),
    "check-sync": ("hand a SIP NOTIFY (raw, on stdin) to provd; prints the SIP response", _check_sync_args),
    "history": ("committed generations", _json_arg),
    "rollback": ("restore an earlier generation as a new one", _rollback_args),
    "confirm": ("confirm the generation waiting on its health check by hand", _no_args),
    "reports": ("the result reports still waiting to be delivered to report.url", _json_arg),
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(arguments)).parse_args(arguments)
    out = _Out(args.quiet, args.verbose)
    # `provd run` speaks through its log (docs/design.md §9); a one-shot command only with -v, beside its output.
    logged = args.command == "run" or args.verbose
    if logged:
        from provd import log

        log.setup(log.threshold(None, verbose=args.verbose, quiet=args.quiet))
    try:
        from provd import config

        cfg = config.load(args.config)
        if logged:
            log.set_level(log.threshold(cfg.log.level, verbose=args.verbose, quiet=args.quiet))
        via_daemon = _VIA_DAEMON.get(args.command)
        if via_daemon is not None:  # the daemon does the work: no lxml, no store in this process
            code = via_daemon(cfg, args, out)
            if code is not None:
                return code
        from provd.settings import phone

        settings = phone.PhoneSettings(cfg, read_only=args.command in _READERS)
        try:
            handler = _COMMANDS[args.command]
            return handler(settings, args, out)
        finally:
            settings.close()
    except ProvdError as exc:
        if args.command == "run":  # the daemon's last word goes to the journal with its priority
            from provd import log

            log.get("provd.cli").error("%s", exc)
        else:
            out.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


def _cmd_validate(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    from provd.run import restore

    ok = True
    results: list[dict[str, object]] = []
    for name in args.files:
        try:
            doc, changes = restore.validate_path(settings, Path(name))
        except ProvdError as exc:
            ok = False
            results.append({"file": name, "valid": False, "errors": [str(exc)], "warnings": []})
            if not args.json:
                out.error(str(exc))
            continue
        warnings = [*doc.warnings, *(w for c in changes for w in c.warnings)]
        errors = [e for c in changes for e in c.errors]
        valid = not errors
        results.append({"file": name, "valid": valid, "errors": errors, "warnings": warnings,
                        "type": doc.kind.value, "sections": [c.to_json() for c in changes]})
        ok = ok and valid
        if not args.json:
            for w in warnings:
                out.warn(w)
            for e in errors:
                out.error(e)
            names = ", ".join(c.section for c in changes)
            verdict = "valid" if valid else "invalid"
            out.info(f"{name}: {verdict} ({doc.kind.value}{': ' + names if names else ''})")
    if args.json:
        print(json.dumps({"valid": ok, "files": results}, indent=2))
    return 0 if ok else 1


def _cmd_apply(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    from provd.run import hooks, restore

    report = restore.apply_path(settings, Path(args.file), progress=_progress(args, out))
    hooks.after_commit(settings.config, report)
    _finish(report.to_json(), args, out)
    # A manual restore is expected to be complete: a rejected section makes it exit 1 (README).
    return 1 if report.errors else 0


def _daemon_start(config: Config, args: argparse.Namespace, out: _Out) -> int | None:
    """`provd start` through the running daemon (its single-flight runner); None when none runs."""
    from provd.core.control import ReportEvent, StartRequest

    final = _daemon_queued(config, StartRequest(args.url, args.dry_run, args.force), ReportEvent, args, out)
    return None if final is None else _end_of_run(final.report, args, out)


def _daemon_queued(config: Config, request: StartRequest | ApplyRequest | RollbackRequest | ConfirmRequest,
                   final: type[_Final],
                   args: argparse.Namespace, out: _Out) -> _Final | None:
    """A request the daemon queues (start, apply, rollback): its progress streamed, its `final` event
    returned; None when no daemon runs.

    Raises:
        ControlError: the daemon refused the request, broke off, or went silent.
    """
    from provd.core.control import ConfirmEvent, ProgressEvent, QueuedEvent, RollbackEvent
    from provd.errors import ControlError
    from provd.service import control_client

    progress = _progress(args, out)
    try:
        for event in control_client.events(config.paths.runtime_dir, request):
            if isinstance(event, ProgressEvent):
                progress(event.line)
            elif isinstance(event, QueuedEvent) and event.running:
                progress("a run is in progress: this one follows it")
            elif isinstance(event, final):
                return event
    except control_client.NoDaemon:
        return None
    what = {RollbackEvent: "rollback", ConfirmEvent: "confirmation"}.get(final, "report")
    raise ControlError(f"the daemon closed the control socket without a {what}")


def _daemon_apply(config: Config, args: argparse.Namespace, out: _Out) -> int | None:
    """`provd apply` while a daemon runs: the daemon applies it, in its queue (one writer, docs/design.md §2). This
    process reads the file, so the daemon never opens a path a client names."""
    from provd.core.control import ApplyRequest, ReportEvent
    from provd.transport.files import read_capped

    path = Path(args.file)
    data = read_capped(path, config.http.max_file_bytes)
    final = _daemon_queued(config, ApplyRequest(data, str(path), path.resolve().as_uri()), ReportEvent, args, out)
    if final is None:
        return None
    _finish(final.report, args, out)
    return 1 if _seq(final.report.get("errors")) else 0


def _daemon_rollback(config: Config, args: argparse.Namespace, out: _Out) -> int | None:
    """`provd rollback` while a daemon runs: carried out by the daemon, in its queue."""
    from provd.core.control import RollbackEvent, RollbackRequest

    final = _daemon_queued(config, RollbackRequest(args.generation), RollbackEvent, args, out)
    if final is None:
        return None
    _print_rollback(args.generation, final.generation, final.sections, out)
    return 0


def _cmd_start(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    """No daemon runs: the same run in this process."""
    import asyncio

    from provd.model import Trigger
    from provd.run import provision

    report = asyncio.run(provision.run(settings, trigger=Trigger.CLI, url=args.url, dry_run=args.dry_run,
                                       force=args.force, progress=_progress(args, out),
                                       wait_until=_deadline(args))).to_json()
    return _end_of_run(report, args, out)


def _end_of_run(report: dict[str, object], args: argparse.Namespace, out: _Out) -> int:
    from provd.model import Outcome

    outcome = _finish(report, args, out).outcome
    return 0 if outcome in (Outcome.APPLIED, Outcome.UNCHANGED) else 1


def _cmd_run(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    """The daemon. Signals are handled here, and only here: TERM/INT stop, HUP provisions now."""
    import asyncio
    import signal

    from provd.service.daemon import Daemon

    async def serve() -> None:
        daemon = Daemon(settings)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, daemon.stop)
        loop.add_signal_handler(signal.SIGINT, daemon.stop)
        loop.add_signal_handler(signal.SIGHUP, daemon.hangup)
        await daemon.serve()

    asyncio.run(serve())
    return 0


def _daemon_status(config: Config, args: argparse.Namespace, out: _Out) -> int | None:
    from provd.service import control_client

    try:
        status = control_client.status(config.paths.runtime_dir)
    except control_client.NoDaemon:
        return None
    return _print_status(status.to_json(), args, out)


def _cmd_status(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    from provd.core.health import status_of

    return _print_status({"state": "not running", "last_report": settings.store.last_run(), "next_run": None,
                          "health": status_of(settings.store.pending())}, args, out)


def _print_status(status: dict[str, object], args: argparse.Namespace, out: _Out) -> int:
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    out.info(f"state: {status.get('state')}" + (f" (pid {status['pid']})" if status.get("pid") else ""))
    running = status.get("running")
    if isinstance(running, dict):
        out.info(f"running: {', '.join(map(str, _seq(running.get('triggers'))))}")
    from provd.model import Outcome, RunReport

    raw = status.get("last_report")
    last = RunReport.from_json(raw) if isinstance(raw, dict) else None
    trigger = last.trigger.value if last is not None and last.trigger else None
    if last is not None and last.outcome is Outcome.RUNNING:
        out.info(f"run #{last.run} ({trigger}) in progress since {last.started}")
    elif last is not None:
        out.info(f"last run: #{last.run} {trigger} → {last.outcome.value} at {last.finished}"
                 + (f" from {last.url}" if last.url else ""))
        if last.sections_changed:
            out.info(f"  sections changed: {', '.join(last.sections_changed)}")
        for error in last.errors:
            out.info(f"  error: {error}")
    else:
        out.info("last run: none")
    out.info(f"next scheduled run: {status.get('next_run') or 'none'}")
    health = status.get("health")
    if isinstance(health, dict) and health.get("pending") is not None:
        out.info(f"health check: generation {health['pending']} pending until {health.get('deadline')}, then "
                 f"rollback to {health.get('rollback_to')} unless confirmed ({health.get('checks')} checks failed"
                 + (f", last: {health['last_failure']}" if health.get("last_failure") else "") + ")")
        if health.get("next_check"):
            out.info(f"  next check: {health['next_check']}")
    elif isinstance(health, dict) and health.get("error"):
        out.info(f"health check: {health['error']}")
    return 0


def _daemon_confirm(config: Config, args: argparse.Namespace, out: _Out) -> int | None:
    """`provd confirm` while a daemon runs: carried out by the daemon, in its queue (one writer)."""
    from provd.core.control import ConfirmEvent, ConfirmRequest

    final = _daemon_queued(config, ConfirmRequest(), ConfirmEvent, args, out)
    return None if final is None else _print_confirm(final.generation, out)


def _cmd_confirm(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    from provd.run.confirm import confirm_pending

    return _print_confirm(confirm_pending(settings, by="provd confirm"), out)


def _print_confirm(generation: int | None, out: _Out) -> int:
    if generation is None:
        out.error("nothing is waiting on its health check")
        return 1
    out.info(f"confirmed: generation {generation}")
    return 0


def _daemon_check_sync(config: Config, args: argparse.Namespace, out: _Out) -> int | None:
    """A NOTIFY from the phone's SIP stack on stdin; the SIP response to send back on stdout."""
    from provd.core.control import CheckSyncRequest
    from provd.errors import ControlError
    from provd.service import control_client

    args.data = sys.stdin.buffer.read()  # read once: the in-process path needs it too
    try:
        answer = control_client.check_sync(config.paths.runtime_dir, CheckSyncRequest(args.source, args.port,
                                                                                       args.data))
    except control_client.NoDaemon:
        return None
    if answer is None:
        raise ControlError("the daemon closed the control socket without a check-sync answer")
    if answer.response is not None:
        sys.stdout.buffer.write(answer.response)
        sys.stdout.flush()
    if answer.status != 200:
        out.warn(answer.reason)
    return 0 if answer.accepted else 1


def _cmd_check_sync(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    """No daemon: decide here, answer first (stdout is closed so the caller has the response at once),
    then do in this process what the daemon would queue (core/triggers.check_sync_request)."""
    import asyncio
    import os
    import time

    from provd.core.checksync import CheckSyncHandler
    from provd.core.triggers import check_sync_request
    from provd.run import hooks, provision

    decision = CheckSyncHandler(settings.catalog.sections).handle(
        args.data, source=(args.source, args.port), policy=settings.check_sync_policy(), now=time.monotonic())
    if decision.response is not None:
        sys.stdout.buffer.write(decision.response)
    sys.stdout.flush()
    os.close(sys.stdout.fileno())
    if decision.status != 200:
        out.warn(decision.reason)
        return 1
    request = check_sync_request(decision)
    if request is None:
        return 0
    if request.reboot_only:
        hooks.run_reboot_hook(settings.config)
    else:
        asyncio.run(provision.run(settings, trigger=request.trigger, url=request.url, restore=request.restore,
                                  reboot=request.reboot))
    return 0


def _cmd_discover(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    import asyncio

    result = asyncio.run(_discover(settings, args, out))
    if isinstance(result, str):
        if args.json:
            print(json.dumps({"outcome": "waiting", "url": None, "source": None, "attempts": [], "errors": [result]},
                             indent=2))
        else:
            out.error(result)
        return 1
    if args.json:
        source = result.source.value if result.source else None
        print(json.dumps({"outcome": "found" if result.url else "none", "url": result.url, "source": source,
                          "candidates": list(result.candidates),
                          "attempts": [a.to_json() for a in result.attempts]}, indent=2))
    else:
        for attempt in result.attempts:
            name = attempt.source.value + (f"/{attempt.family.value}" if attempt.family else "")
            out.info(f"  {name:<15} {attempt.result.value:<8} {attempt.detail}")
        source = result.source.value if result.source else None
        out.info(f"url: {result.url} (from {source})" if result.url else "no provisioning URL found")
    return 0 if result.url else 1


async def _discover(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> Discovery | str:
    from provd import __version__
    from provd.run import device, provision
    from provd.run.wiring import real_ports
    from provd.sources import discovery, preconditions

    config = settings.config
    dev = device.device_from_config(config)
    ports = real_ports()
    async with ports.http(provision.http_options(config, device.user_agent(config, dev, __version__))) as client:
        ctx = discovery.Context(config=config, device=dev, switches=settings.discovery_switches(), client=client,
                                progress=_progress(args, out), ports=ports)
        try:
            await preconditions.wait_for_preconditions(ctx, deadline=_deadline(args))
        except PreconditionsNotMet as exc:
            return str(exc)
        return await discovery.discover(ctx)


def _deadline(args: argparse.Namespace) -> float | None:
    import time

    return None if args.wait is None else time.monotonic() + args.wait


def _progress(args: argparse.Namespace, out: _Out) -> Callable[[str], None]:
    if getattr(args, "json", False) or out.quiet:  # rollback has no --json
        return lambda _line: None
    return out.info


def _finish(report: dict[str, object], args: argparse.Namespace, out: _Out) -> RunReport:
    """The end of a run: the docs/design.md §8 report with --json (as it came: from this process or the
    daemon), else warnings, errors and a summary line rendered from the typed report."""
    from provd.model import Outcome, RunReport

    if args.json:
        print(json.dumps(report, indent=2))
        return RunReport.from_json(report)
    typed = RunReport.from_json(report)
    for w in typed.warnings:
        out.warn(w)
    for e in typed.errors:
        out.error(e)
    for section in typed.diff:
        out.info(f"  {section.section}: would add {len(section.added)}, change {len(section.changed)}, "
                 f"remove {len(section.removed)}")
        for sign, paths in (("+", section.added), ("~", section.changed), ("-", section.removed)):
            for path in paths:
                out.info(f"    {sign} {path}")
    changed = ", ".join(typed.sections_changed)
    if typed.outcome is Outcome.FAILED:
        out.info("failed: nothing was committed")
    elif typed.outcome is Outcome.QUARANTINED:
        out.info("quarantined: nothing was committed")
    elif typed.outcome is Outcome.WAITING:
        out.info("waiting: network or time not ready; nothing was fetched")
    elif typed.dry_run:
        out.info(f"dry run: {'would change ' + changed if changed else 'nothing would change'}; "
                 "nothing was committed")
    elif typed.generation is not None:
        out.info(f"applied: generation {typed.generation} ({changed})")
    else:
        out.info("unchanged: nothing to commit")
    return typed


def _seq(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _cmd_backup(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    text = settings.configuration_xml(backup=True)
    if args.output:
        target = Path(args.output)
        tmp = target.with_name(target.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
        except OSError as exc:
            raise ProvdError(f"{target}: cannot write backup: {exc.strerror}") from exc
    else:
        sys.stdout.write(text)
    return 0


def _cmd_show(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    if args.section:
        sys.stdout.write(settings.section_xml(args.section))
    else:
        sys.stdout.write(settings.configuration_xml(backup=False))
    return 0


def _cmd_history(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    gens = settings.store.history()
    if args.json:
        print(json.dumps([{"generation": g.number, "time": g.time, "trigger": g.trigger.value, "source": g.source,
                           "sections_changed": list(g.sections)} for g in gens], indent=2))
        return 0
    for g in gens:
        print(f"{g.number:>5}  {g.time}  {g.trigger.value:<10} {', '.join(g.sections) or '-'}  {g.source}")
    return 0


def _cmd_rollback(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    gen, sections = settings.rollback(args.generation)
    _print_rollback(args.generation, gen, sections, out)
    return 0


def _cmd_reports(settings: PhoneSettings, args: argparse.Namespace, out: _Out) -> int:
    """The outbox as it is (docs/design.md §10), read-only: what the server has not heard yet."""
    from provd.core.urls import redact

    store = settings.store
    waiting, dropped = store.outbox(), store.dropped()
    url = settings.config.report.url
    if args.json:
        print(json.dumps({"url": redact(url) if url else None, "dropped": dropped,
                          "pending": [{"id": r.id, "run": r.run, "time": r.time, "ready": r.ready, "report": r.body}
                                      for r in waiting]}, indent=2))
        return 0
    if url is None:
        out.info("report.url is not set: no reports are kept")
    for r in waiting:
        body = r.body
        what = f"event {body.get('event')} of generation {body.get('generation')}" if r.run is None else \
            f"run #{r.run} {body.get('trigger')} → {body.get('outcome')}" + \
            (f" (generation {body['generation']})" if body.get("generation") else "")
        out.info(f"{r.id:>5}  {r.time}  {what}{'' if r.ready else '  (run in progress)'}")
    out.info(f"{len(waiting)} waiting" + (f" for {redact(url)}" if url else "") +
             (f"; {dropped} dropped (the outbox was full)" if dropped else ""))
    return 0


def _print_rollback(target: int, gen: int | None, sections: list[str], out: _Out) -> None:
    if gen is None:
        out.info(f"unchanged: the settings already equal generation {target}")
    else:
        out.info(f"rolled back to generation {target} as generation {gen} ({', '.join(sections)})")

# Commands that only read the store: it is opened read-only, so they work on a full or read-only disk.
_READERS = frozenset({"show", "backup", "history", "status", "reports"})

_VIA_DAEMON: dict[str, Callable[[Config, argparse.Namespace, _Out], int | None]] = {
    "start": _daemon_start,
    "status": _daemon_status,
    "check-sync": _daemon_check_sync,
    "apply": _daemon_apply,
    "rollback": _daemon_rollback,
    "confirm": _daemon_confirm,
}

_COMMANDS = {
    "validate": _cmd_validate,
    "apply": _cmd_apply,
    "start": _cmd_start,
    "discover": _cmd_discover,
    "run": _cmd_run,
    "status": _cmd_status,
    "check-sync": _cmd_check_sync,
    "backup": _cmd_backup,
    "show": _cmd_show,
    "history": _cmd_history,
    "rollback": _cmd_rollback,
    "confirm": _cmd_confirm,
    "reports": _cmd_reports,
}
