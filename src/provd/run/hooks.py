"""Change hooks (docs/design.md §1 step 6, §3 `hooks`): after a commit, each configured command runs once with the
changed sections it covers in `PROVD_SECTIONS`; the reboot hook when a check-sync asks for it and one is
configured. A failing hook is a warning in the run report, never a failed run: the settings are committed.

Synchronous at heart (`subprocess.run` with a timeout): `provd apply` calls it directly and stays free of
asyncio, whose import alone (it loads OpenSSL through ssl) costs a command 10 MB; the daemon calls it in a
worker thread.
"""

from __future__ import annotations

import os
import subprocess

from provd.config import Config
from provd.model import RunReport

HOOK_TIMEOUT_S = 60.0
REBOOT_RAN = "reboot hook ran"  # run_reboot_hook's answer when the hook exited 0


def changed_commands(config: Config, sections: list[str]) -> dict[tuple[str, ...], list[str]]:
    """argv → the changed sections it covers ("*" covers any section without a hook of its own)."""
    configured = config.hooks.changed or {}
    commands: dict[tuple[str, ...], list[str]] = {}
    if not isinstance(configured, dict):
        return commands
    for section in sections:
        argv = configured.get(section, configured.get("*"))
        if argv:
            commands.setdefault(tuple(str(a) for a in argv), []).append(section)
    return commands


def run_changed_hooks(config: Config, sections: list[str]) -> list[str]:
    """Warnings for hooks that failed; nothing runs when nothing changed."""
    warnings = []
    for argv, covered in changed_commands(config, sections).items():
        problem = run_command(list(argv), {"PROVD_SECTIONS": ",".join(covered)})
        if problem:
            warnings.append(f"hook {' '.join(argv)} for {', '.join(covered)}: {problem}")
    return warnings


def run_reboot_hook(config: Config) -> str | None:
    """What happened, or None when no reboot hook is configured (a reboot request is then ignored)."""
    argv = config.hooks.reboot
    if not argv:
        return None
    problem = run_command([str(a) for a in argv], {})
    return f"reboot hook: {problem}" if problem else REBOOT_RAN


def run_command(argv: list[str], extra_env: dict[str, str]) -> str | None:
    """None when the command exited 0, else what went wrong."""
    try:
        proc = subprocess.run(argv, env={**os.environ, **extra_env}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=HOOK_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        return f"killed after {HOOK_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"cannot start: {exc.strerror}"
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-200:]}"
    return None


def after_commit(config: Config, report: RunReport, *, reboot: bool = False) -> None:
    """The one place that says which hooks follow a run: the change hooks when it committed a generation,
    then the reboot hook when one was asked for (never after a dry run). What they say becomes the report's
    warnings; a hook never fails the run. Blocking: the daemon calls it in a worker thread."""
    if report.generation is not None:
        report.warnings += run_changed_hooks(config, report.sections_changed)
    if reboot and not report.dry_run:
        done = run_reboot_hook(config)
        report.warnings.append(done or "reboot requested, but hooks.reboot is not configured: ignored")
