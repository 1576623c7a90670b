"""Change hooks (DESIGN §1 step 6, §3 `hooks`): after a commit, each configured command runs once with the
changed sections it covers in `PROVD_SECTIONS`; the reboot hook when a check-sync asks for it and one is
configured. A failing hook is a warning in the run report, never a failed run: the settings are committed."""

from __future__ import annotations

import asyncio
import os

from provd.config import Config

HOOK_TIMEOUT_S = 60.0


async def run_changed_hooks(config: Config, sections: list[str]) -> list[str]:
    """Warnings for hooks that failed; nothing runs when nothing changed."""
    configured = config.get("hooks.changed") or {}
    if not sections or not isinstance(configured, dict):
        return []
    commands: dict[tuple[str, ...], list[str]] = {}
    for section in sections:
        argv = configured.get(section, configured.get("*"))
        if argv:
            commands.setdefault(tuple(str(a) for a in argv), []).append(section)
    warnings = []
    for argv, covered in commands.items():
        problem = await _run(list(argv), {"PROVD_SECTIONS": ",".join(covered)})
        if problem:
            warnings.append(f"hook {' '.join(argv)} for {', '.join(covered)}: {problem}")
    return warnings


async def run_reboot_hook(config: Config) -> str | None:
    """Returns what happened (or None when no reboot hook is configured: then a reboot is ignored)."""
    argv = config.get("hooks.reboot")
    if not argv:
        return None
    problem = await _run([str(a) for a in argv], {})
    return f"reboot hook: {problem}" if problem else "reboot hook ran"


async def _run(argv: list[str], extra_env: dict[str, str]) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(*argv, env={**os.environ, **extra_env},
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        return f"cannot start: {exc.strerror}"
    try:
        async with asyncio.timeout(HOOK_TIMEOUT_S):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"killed after {HOOK_TIMEOUT_S:g} s"
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {err.decode(errors='replace').strip()[-200:]}"
    return None
