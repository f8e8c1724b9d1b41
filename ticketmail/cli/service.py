"""Running and keeping the service: `serve`, `check-config`, `backup`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from ticketmail.cli._common import (
    Verbs,
    plural,
    print_json,
)
from ticketmail.config import Config
from ticketmail.errors import ConfigError, NotFoundError, RefusedError, TicketmailError
from ticketmail.outbound.compose import Templates


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from ticketmail.daemon import serve

    try:
        return asyncio.run(serve(config))
    except OSError as exc:
        raise TicketmailError(
            f"cannot listen on {config.smtp.host}:{config.smtp.port}: {exc.strerror or exc}"
        ) from None


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    try:
        Templates(config.templates_dir).check()
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: templates.dir: {exc}") from None
    data_dir = config.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{config.source}: storage.data_dir: {data_dir} is not writable: {exc.strerror}"
        ) from None
    from ticketmail.smtp.server import tls_context

    tls_context(config)
    probe = _probe_relay(config) if args.probe_relay else None
    effective = dataclasses.asdict(config)
    effective.pop("source")
    if effective["relay"]["password"]:
        effective["relay"]["password"] = "********"  # noqa: S105 - the mask, not a secret
    else:
        effective["relay"]["password"] = "(not set)"  # noqa: S105
    if effective["mail"]["secret"]:
        effective["mail"]["secret"] = "********"  # noqa: S105 - the mask, not a secret
    else:
        effective["mail"]["secret"] = "(not set: a random secret kept in storage.data_dir)"  # noqa: S105
    if args.json:
        report: dict[str, Any] = {"source": config.source, "config": effective}
        if probe is not None:
            report["relay_probe"] = probe
        print_json(report)
        return 0
    print(f"# effective configuration from {config.source}")
    print(f"# templates: {config.templates_dir}  (checked: de, en)")
    if probe is not None:
        print(f"# {probe}")
    for section, values in effective.items():
        print(f"\n[{section}]")
        for key, value in values.items():
            shown = list(value) if isinstance(value, tuple) else value
            print(f"{key} = {json.dumps(shown, ensure_ascii=False)}")
    print("\nok")
    return 0


def _probe_relay(config: Config) -> str:
    """A line saying the relay answered, or a TicketmailError saying why not (exit 1)."""
    from ticketmail.outbound.relay import RelayError, probe_relay

    relay = config.relay
    if relay.transport == "file":
        sent = config.paths.sent
        try:
            sent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=sent, prefix=".probe-"):
                pass
        except OSError as exc:
            raise TicketmailError(f"relay: cannot write {sent}: {exc.strerror}") from None
        return f"relay: file transport writes to {sent}"
    try:
        greeting = asyncio.run(probe_relay(relay, hostname=config.smtp.hostname))
    except RelayError as exc:
        raise TicketmailError(
            f"relay {relay.host}:{relay.port} ({relay.security}) not usable: {exc}"
        ) from None
    login = f", logged in as {relay.username}" if relay.username else ""
    return f"relay {relay.host}:{relay.port} ({relay.security}) answered: {greeting}{login}"


def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    """The database (online backup) first, then the blobs: every blob it names is older.
    On PostgreSQL: pg_dump's custom format of the database (blobs included) into DEST."""
    from ticketmail.storage.backup import backup
    from ticketmail.storage.paths import DataPaths

    dest = Path(args.dest)
    if config.database.postgres:
        return _backup_postgres(config, dest)
    source_db = config.paths.database
    if not source_db.is_file():
        raise NotFoundError(f"no database at {source_db} (storage.data_dir)")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RefusedError(f"{dest} exists and is not an empty directory")
    try:
        copied = backup(config.paths, DataPaths(dest))
    except OSError as exc:
        raise TicketmailError(f"backup to {dest} failed: {exc.strerror or exc}") from None
    print(f"backup written to {dest}: database and {plural(copied, 'file')}")
    return 0


def _backup_postgres(config: Config, dest: Path) -> int:
    from ticketmail.storage.backup import backup_postgres

    if dest.exists():
        raise RefusedError(f"{dest} exists: a PostgreSQL backup is written to a new file")
    try:
        size = backup_postgres(config.database.url, dest)
    except OSError as exc:
        raise TicketmailError(f"backup to {dest} failed: {exc.strerror or exc}") from None
    print(f"backup written to {dest}: pg_dump (custom format) of the database, {size} bytes")
    return 0


def register(verbs: Verbs) -> None:
    verbs.add(verbs.top, "serve", cmd_serve, "run the daemon in the foreground")
    p = verbs.add(
        verbs.top,
        "check-config",
        cmd_check_config,
        "validate config, templates, data dir",
        listing=True,
    )
    p.add_argument(
        "--probe-relay", action="store_true", help="also connect and log in to the relay"
    )
    p = verbs.add(
        verbs.top, "backup", cmd_backup, "consistent copy of database and files, daemon running"
    )
    p.add_argument("dest", metavar="DEST")
