"""The `systemd` check of check_deploy.py: the units in deploy/systemd/.

Every service runs /usr/local/bin/vault as the user `vault` with the same hardening
(read-only file system, no capabilities, private /tmp and /dev, a system-call filter, ...);
vault-backup.service is a oneshot started by vault-backup.timer; vault.service runs the
scheduler, `vault run`, with systemd's notify protocol, a reload by SIGHUP, SIGTERM to the
scheduler only (KillMode=mixed) and a stop timeout longer than the scheduler's own drain
(shutdown_grace, then the children's time to stop after SIGTERM, then the runtime's
shutdown), with those figures read from the Rust sources so that the unit cannot fall
behind them. deploy/README.md names every unit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SYSTEMD = Path("deploy") / "systemd"
PREFIX = "/usr/local/bin/vault --config /etc/vault/vault.toml "

# What every vault service has, as `key: value` after the unit's last assignment of the
# key ("" for an empty assignment, which clears a list setting).
HARDENING = {
    "User": "vault",
    "Group": "vault",
    "UMask": "0077",
    "ProtectSystem": "strict",
    "StateDirectory": "vault",
    "StateDirectoryMode": "0700",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "RestrictSUIDSGID": "yes",
    "RemoveIPC": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "RestrictNamespaces": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "SystemCallErrorNumber": "EPERM",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
}
# Settings that would undo the hardening above.
FORBIDDEN = {"AmbientCapabilities", "DynamicUser", "PermissionsStartOnly", "PrivilegeEscalation"}

# systemd time span units, in seconds.
TIME_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value assigned, in order. Comments, blank lines and
    backslash continuations as systemd reads them; a line outside any section or
    without `=` raises ValueError."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line:
            raise ValueError(f"line {i}: {line!r} is not `Key=value` inside a [Section]")
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def effective(values: list[str] | None) -> str | None:
    """A key's value as systemd applies it: the last assignment."""
    return values[-1] if values else None


def time_span(text: str) -> float | None:
    """A systemd time span (`60`, `60s`, `1min 30s`) in seconds; None if it is not one."""
    text = text.strip()
    if text == "infinity":
        return float("inf")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total = 0.0
    pos = 0
    for match in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)", text):
        if match.start() != pos or match.group(2) not in TIME_UNITS:
            return None
        total += float(match.group(1)) * TIME_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def seconds_in_source(root: Path, rel: str, pattern: str) -> int | None:
    """The whole seconds `pattern` (one group) captures in the Rust file `rel`."""
    match = re.search(pattern, (root / rel).read_text())
    return int(match.group(1)) if match else None


def check_service(report: Any, rel: str, unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit.get("Service", {})
    report.expect("Unit" in unit and "Service" in unit, f"{rel}: has [Unit] and [Service]")
    report.expect(bool(effective(unit.get("Unit", {}).get("Description"))), f"{rel}: has a Description")
    wrong = {k: effective(service.get(k)) for k, v in HARDENING.items() if effective(service.get(k)) != v}
    report.expect(not wrong, f"{rel}: the hardening of every vault service ({len(HARDENING)} settings: "
                  "User=vault, ProtectSystem=strict, empty CapabilityBoundingSet, SystemCallFilter, ...)",
                  "\n".join(f"{k}={'(missing)' if v is None else v}, expected {k}={HARDENING[k]}"
                            for k, v in wrong.items()))
    bad = sorted(FORBIDDEN & set(service))
    report.expect(not bad, f"{rel}: nothing that gives privileges back ({', '.join(sorted(FORBIDDEN))})",
                  f"found: {bad}")
    paths = [p for v in service.get("ReadWritePaths", []) for p in v.split()]
    report.expect(all(p.lstrip("-").startswith("/") for p in paths),
                  f"{rel}: every ReadWritePaths= entry is absolute", f"ReadWritePaths: {paths}")
    start = service.get("ExecStart", [])
    report.expect(len(start) == 1 and start[0].startswith(PREFIX),
                  f"{rel}: one ExecStart=, running `{PREFIX}...`", f"ExecStart: {start}")


def check_systemd(report: Any, root: Path) -> None:
    directory = root / SYSTEMD
    print(f"{SYSTEMD}:")
    units: dict[str, dict[str, dict[str, list[str]]]] = {}
    for path in sorted(directory.iterdir()):
        rel = f"{SYSTEMD}/{path.name}"
        try:
            units[path.name] = parse_unit(path.read_text())
            report.ok(f"{rel} parses")
        except ValueError as err:
            report.fail(f"{rel} parses", str(err))
    expected = {"vault.service", "vault-backup.service", "vault-backup.timer"}
    report.expect(expected <= set(units), f"{SYSTEMD}: has {', '.join(sorted(expected))}",
                  f"found: {sorted(units)}")

    for name, unit in units.items():
        if name.endswith(".service"):
            check_service(report, f"{SYSTEMD}/{name}", unit)

    backup = units.get("vault-backup.service")
    if backup is not None:
        rel = f"{SYSTEMD}/vault-backup.service"
        service = backup.get("Service", {})
        report.expect(effective(service.get("Type")) == "oneshot", f"{rel}: Type=oneshot")
        report.expect(effective(service.get("ExecStart")) == PREFIX + "backup",
                      f"{rel}: ExecStart= runs `vault ... backup` (every job)")
    timer = units.get("vault-backup.timer")
    if timer is not None:
        rel = f"{SYSTEMD}/vault-backup.timer"
        section = timer.get("Timer", {})
        report.expect(bool(effective(section.get("OnCalendar"))), f"{rel}: has OnCalendar=")
        report.expect(effective(section.get("Persistent")) in ("yes", "true", "on", "1"),
                      f"{rel}: Persistent=true (catches up after downtime)")
        report.expect(effective(section.get("Unit")) in (None, "vault-backup.service"),
                      f"{rel}: starts vault-backup.service")
        report.expect(effective(timer.get("Install", {}).get("WantedBy")) == "timers.target",
                      f"{rel}: WantedBy=timers.target")

    run = units.get("vault.service")
    if run is not None:
        check_scheduler_unit(report, root, run)

    readme = (root / "deploy" / "README.md").read_text()
    missing = [name for name in units if f"systemd/{name}" not in readme]
    report.expect(not missing, "deploy/README.md names every unit in deploy/systemd/", f"not named: {missing}")


def check_scheduler_unit(report: Any, root: Path, unit: dict[str, dict[str, list[str]]]) -> None:
    rel = f"{SYSTEMD}/vault.service"
    service = unit.get("Service", {})
    get = lambda key: effective(service.get(key))  # noqa: E731
    report.expect(get("Type") == "notify",
                  f"{rel}: Type=notify (vault run says READY=1, RELOADING=1, STOPPING=1)", f"Type={get('Type')}")
    report.expect(get("ExecStart") == PREFIX + "run", f"{rel}: ExecStart= runs `vault ... run`",
                  f"ExecStart={get('ExecStart')}")
    report.expect(get("ExecReload") == "/bin/kill -HUP $MAINPID",
                  f"{rel}: ExecReload= sends SIGHUP to the scheduler (it reloads vault.toml)",
                  f"ExecReload={get('ExecReload')}")
    report.expect(get("KillMode") == "mixed",
                  f"{rel}: KillMode=mixed (SIGTERM to the scheduler only: running backups get the grace time)",
                  f"KillMode={get('KillMode')}")
    report.expect(get("Restart") == "on-failure", f"{rel}: Restart=on-failure", f"Restart={get('Restart')}")
    report.expect(get("NotifyAccess") in (None, "main", "all"), f"{rel}: the main process may notify",
                  f"NotifyAccess={get('NotifyAccess')}")
    report.expect(effective(unit.get("Install", {}).get("WantedBy")) == "multi-user.target",
                  f"{rel}: WantedBy=multi-user.target")

    # The drain, as the sources define it: shutdown_grace's default, then the wait for a
    # child after SIGTERM, then the runtime's shutdown timeout in main.
    grace = seconds_in_source(root, "src/config/scheduler.rs",
                              r"shutdown_grace:\s*Duration::from_secs\((\d+)\)")
    stop = seconds_in_source(root, "src/commands/run/runner.rs",
                             r"const STOP_WAIT: Duration = Duration::from_secs\((\d+)\)")
    runtime = seconds_in_source(root, "src/main.rs", r"shutdown_timeout\(Duration::from_secs\((\d+)\)\)")
    found = report.expect(None not in (grace, stop, runtime),
                          "the drain's durations are found in the sources (shutdown_grace default, STOP_WAIT, "
                          "the runtime's shutdown_timeout)", f"grace={grace}, stop={stop}, runtime={runtime}")
    raw = get("TimeoutStopSec")
    timeout = time_span(raw) if raw is not None else None
    if found:
        drain = grace + stop + runtime
        report.expect(timeout is not None and drain < timeout < float("inf"),
                      f"{rel}: TimeoutStopSec ({raw}) is finite and longer than the drain: shutdown_grace "
                      f"{grace} s + {stop} s for a child to stop after SIGTERM + {runtime} s of runtime "
                      f"shutdown = {drain} s",
                      f"TimeoutStopSec={raw}")
