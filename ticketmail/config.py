"""Configuration: config.toml plus environment, validated into a frozen Config."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import socket
import tomllib
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values

from ticketmail.errors import ConfigError
from ticketmail.storage.paths import DatabaseTarget, DataPaths

__all__ = [
    "Config",
    "LogConfig",
    "MailConfig",
    "NodeConfig",
    "PolicyConfig",
    "RelayConfig",
    "SmtpConfig",
    "StorageConfig",
    "TemplatesConfig",
    "TicketsConfig",
    "WebConfig",
    "load_config",
    "resolve_config_path",
]

ENV_CONFIG = "TICKETMAIL_CONFIG"
ENV_RELAY_PASSWORD = "TICKETMAIL_RELAY_PASSWORD"  # noqa: S105 - the variable's name, not a secret
ENV_DATABASE_URL = "TICKETMAIL_DATABASE_URL"
ENV_SECRET = "TICKETMAIL_SECRET"  # noqa: S105 - signs the Message-IDs ticketmail generates
MIN_SECRET_CHARS = 16
MIB = 1024 * 1024
MAX_WORKERS = 64
DEFAULT_REGISTRATION_URL = "https://www.stueber.de/support/registrierung"

# The choices of the keys that take one of a few words; `load_config` checks them.
RelayTransport = Literal["file", "smtp"]
RelaySecurity = Literal["none", "starttls", "tls"]
UnknownSenderPolicy = Literal["reject", "discard"]
NoContractPolicy = Literal["reply", "reject", "discard"]
SenderAuth = Literal["off", "authres"]
UnverifiedPolicy = Literal["reject", "hold"]
Language = Literal["de", "en"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
Backend = Literal["sqlite", "postgres"]


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "localhost"
    recipients: tuple[str, ...] = ("support@stueber.de",)
    max_message_bytes: int = 25 * MIB
    max_sessions: int = 100
    max_sessions_per_ip: int = 10
    max_commands: int = 10000
    max_line_bytes: int = 1024 * 1024
    timeout_seconds: float = 300.0
    idle_seconds: float = 60.0
    session_max_seconds: float = 900.0
    data_block_seconds: float = 180.0
    data_max_seconds: float = 600.0
    data_min_bytes_per_second: int = 256
    spool_threshold_bytes: int = MIB
    memory_budget_bytes: int = 128 * MIB
    shutdown_grace_seconds: float = 30.0
    tls_cert_file: str = ""
    tls_key_file: str = ""
    authserv_id: str = ""
    lmtp: bool = False
    workers: int = 2


@dataclass(frozen=True, slots=True)
class StorageConfig:
    data_dir: str = "./var"
    backend: Backend = "sqlite"
    # Filled from the environment only (TICKETMAIL_DATABASE_URL or .env), for "postgres".
    database_url: str = field(default="", repr=False, metadata={"env_only": ENV_DATABASE_URL})


@dataclass(frozen=True, slots=True)
class NodeConfig:
    # This node's name in /metrics and the logs (SPEC 10); empty: the host name.
    name: str = ""


@dataclass(frozen=True, slots=True)
class MailConfig:
    from_address: str = "support@stueber.de"
    from_name: str = "Stueber Support"
    message_id_domain: str = "stueber.de"
    # Filled from the environment only: the key that signs generated Message-IDs. Empty means
    # a random secret kept in the data directory's database (see msgid.py).
    secret: str = field(default="", repr=False, metadata={"env_only": ENV_SECRET})


@dataclass(frozen=True, slots=True)
class RelayConfig:
    transport: RelayTransport = "file"
    host: str = "127.0.0.1"
    port: int = 25
    security: RelaySecurity = "none"
    username: str = ""
    tls_ca_file: str = ""
    timeout_seconds: float = 30.0
    max_age_hours: float = 48.0
    retry_initial_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    poll_seconds: float = 5.0
    # Filled from the environment only, never from the file.
    password: str = field(default="", repr=False, metadata={"env_only": ENV_RELAY_PASSWORD})


@dataclass(frozen=True, slots=True)
class TicketsConfig:
    subject_tag: str = "Ticket"
    first_number: int = 100001
    reopen_days: int = 14
    acknowledge_followups: bool = False


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    unknown_sender: UnknownSenderPolicy = "reject"
    no_contract: NoContractPolicy = "reply"
    # Empty: `<web.base_url>/register` while the web is enabled, else the vendor's page.
    registration_url: str = ""
    offer_address: str = "office@stueber.de"
    max_auto_replies_per_hour: int = 10
    max_auto_replies_per_ticket_per_hour: int = 5
    bounce_block_days: float = 7.0
    sender_auth: SenderAuth = "off"
    unverified: UnverifiedPolicy = "reject"


@dataclass(frozen=True, slots=True)
class TemplatesConfig:
    dir: str = ""
    default_language: Language = "de"


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: LogLevel = "info"
    format: LogFormat = "auto"


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The customer portal (SPEC 8), served by the daemon beside the SMTP intake."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = "http://127.0.0.1:8080"
    confirm_hours: float = 24.0
    session_idle_hours: float = 12.0
    ip_login_failures: int = 50
    address_login_failures: int = 30
    ip_mail_requests: int = 20
    # One client cannot take the web away (SPEC 8.4): request headers within this time, open
    # connections capped in total and per source, client addresses from these proxies only.
    header_timeout_seconds: float = 10.0
    max_connections: int = 400
    max_connections_per_ip: int = 50
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    # SPEC 8.4: a request body that sends nothing for this long, or less than body_min_rate
    # bytes a second on average once this long has passed, is ended (408, connection closed).
    body_idle_seconds: float = 10.0
    body_min_rate: float = 1024.0
    # Database time one search of the portal or the desk gets, in milliseconds (SPEC 8.4).
    search_ms: int = 500
    # The time zone of times typed and shown in the desk (a waiting ticket's time, SPEC 9.1).
    timezone: str = "Europe/Berlin"


@dataclass(frozen=True, slots=True)
class DeskConfig:
    """The support desk (SPEC 9)."""

    # Who hears of tickets without an owner; empty: every agent.
    notify_to: tuple[str, ...] = ()
    # How often the daemon looks for waiting tickets whose time has come (SPEC 9.1).
    wait_check_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    smtp: SmtpConfig = SmtpConfig()
    storage: StorageConfig = StorageConfig()
    node: NodeConfig = NodeConfig()
    mail: MailConfig = MailConfig()
    relay: RelayConfig = RelayConfig()
    tickets: TicketsConfig = TicketsConfig()
    policy: PolicyConfig = PolicyConfig()
    templates: TemplatesConfig = TemplatesConfig()
    log: LogConfig = LogConfig()
    web: WebConfig = WebConfig()
    desk: DeskConfig = DeskConfig()
    source: str = "<built-in defaults>"

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def paths(self) -> DataPaths:
        """Where the database, the blobs and the file relay's mails are under data_dir."""
        return DataPaths(self.data_dir)

    @property
    def database(self) -> DatabaseTarget:
        """Where the database is: the SQLite file in data_dir, or the PostgreSQL URL."""
        return DatabaseTarget(self.storage.backend, self.paths.database, self.storage.database_url)

    @property
    def node_name(self) -> str:
        """`node.name`, else the host name."""
        return self.node.name or socket.gethostname()

    @property
    def templates_dir(self) -> Path:
        if self.templates.dir:
            return Path(self.templates.dir)
        return default_templates_dir()

    @property
    def registration_url(self) -> str:
        """Where a refused sender is sent: `policy.registration_url`, else the portal's page."""
        if self.policy.registration_url:
            return self.policy.registration_url
        if self.web.enabled:
            return self.web.base_url.rstrip("/") + "/register"
        return DEFAULT_REGISTRATION_URL

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address ticketmail receives on or sends from, case-folded."""
        return frozenset(a.casefold() for a in (*self.smtp.recipients, self.mail.from_address))


def default_templates_dir() -> Path:
    """The templates shipped with ticketmail: inside the wheel, else the repository's."""
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    if packaged.is_dir():
        return packaged
    return here.parent / "templates"


def resolve_config_path(cli_value: str | None) -> Path | None:
    """--config, else $TICKETMAIL_CONFIG, else None (built-in defaults)."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else None


def load_config(path: Path | None, *, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file; raise ConfigError naming the file and key."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    source = "<built-in defaults>"
    if path is not None:
        source = str(path)
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for key, value in raw.items():
        if key not in hints or key == "source":
            kind = "section" if isinstance(value, dict) else "key"
            raise ConfigError(f"{source}: unknown {kind} {key}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a table [{key}]")
    for f in dataclasses.fields(Config):
        if f.name == "source":
            continue
        section_type = hints[f.name]
        sections[f.name] = _build_section(
            section_type, raw.get(f.name, {}), source=source, section=f.name
        )
    password = env.get(ENV_RELAY_PASSWORD) or _dotenv_value(path, ENV_RELAY_PASSWORD)
    sections["relay"] = dataclasses.replace(sections["relay"], password=password)
    url = env.get(ENV_DATABASE_URL) or _dotenv_value(path, ENV_DATABASE_URL)
    sections["storage"] = dataclasses.replace(sections["storage"], database_url=url)
    secret = env.get(ENV_SECRET) or _dotenv_value(path, ENV_SECRET)
    sections["mail"] = dataclasses.replace(sections["mail"], secret=secret)
    config = Config(**sections, source=source)
    _check_semantics(config)
    return config


def _dotenv_value(path: Path | None, name: str) -> str:
    """`name` from a .env beside the config file, else from one in the working directory.

    Read without touching os.environ: the .env file supplies the secrets, nothing else.
    """
    candidates = [Path(".env")]
    if path is not None:
        candidates.insert(0, path.parent / ".env")
    for candidate in candidates:
        if candidate.is_file():
            value = dotenv_values(candidate).get(name)
            if value:
                return value
    return ""


def _build_section(cls: Any, values: dict[str, Any], *, source: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {section}.{key}")
        variable = fields[key].metadata.get("env_only")
        if variable:
            raise ConfigError(
                f"{source}: unknown key {section}.{key} (secrets come only from the "
                f"environment or .env: {variable})"
            )
        name = f"{section}.{key}"
        hint = hints[key]
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        converted = _convert(str if choices else hint, value, source=source, name=name)
        if choices and converted not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"{source}: {name}: {converted!r} is not one of {allowed}")
        kwargs[key] = converted
    return cls(**kwargs)


def _convert(hint: Any, value: Any, *, source: str, name: str) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {name}: expected {expected}, got {type(value).__name__}")

    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {name}: expected a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail("a list of strings")
        return tuple(value)
    if isinstance(hint, types.UnionType):  # pragma: no cover - no such keys yet
        raise fail(str(hint))
    raise ConfigError(f"{source}: {name}: unsupported setting type")  # pragma: no cover


def _check_semantics(config: Config) -> None:
    src = config.source
    if bool(config.smtp.tls_cert_file) != bool(config.smtp.tls_key_file):
        missing = "smtp.tls_key_file" if config.smtp.tls_cert_file else "smtp.tls_cert_file"
        raise ConfigError(f"{src}: {missing}: needed together with the other TLS file")

    def positive(name: str, value: float) -> None:
        if value <= 0:
            raise ConfigError(f"{src}: {name}: must be greater than 0, got {value}")

    if config.storage.backend == "postgres" and not config.storage.database_url:
        raise ConfigError(
            f'{src}: storage.backend: "postgres" needs the database\'s URL in the environment '
            f"or .env: {ENV_DATABASE_URL} (say postgresql://user@host/dbname; the password "
            "from PGPASSWORD or ~/.pgpass)"
        )
    if not 0 <= config.smtp.port <= 65535:
        raise ConfigError(f"{src}: smtp.port: {config.smtp.port} is not a port number")
    if not 0 < config.relay.port <= 65535:
        raise ConfigError(f"{src}: relay.port: {config.relay.port} is not a port number")
    if not config.smtp.recipients:
        raise ConfigError(f"{src}: smtp.recipients: at least one address is needed")
    for address in config.smtp.recipients:
        if "@" not in address:
            raise ConfigError(f"{src}: smtp.recipients: {address!r} is not a mail address")
    if "@" not in config.mail.from_address:
        raise ConfigError(
            f"{src}: mail.from_address: {config.mail.from_address!r} is not a mail address"
        )
    if not 0 <= config.smtp.workers <= MAX_WORKERS:
        raise ConfigError(
            f"{src}: smtp.workers: {config.smtp.workers} is not between 0 and {MAX_WORKERS}"
        )
    positive("smtp.max_message_bytes", config.smtp.max_message_bytes)
    positive("smtp.max_sessions", config.smtp.max_sessions)
    positive("smtp.max_commands", config.smtp.max_commands)
    positive("smtp.max_line_bytes", config.smtp.max_line_bytes)
    positive("smtp.timeout_seconds", config.smtp.timeout_seconds)
    positive("smtp.max_sessions_per_ip", config.smtp.max_sessions_per_ip)
    positive("smtp.idle_seconds", config.smtp.idle_seconds)
    positive("smtp.session_max_seconds", config.smtp.session_max_seconds)
    positive("smtp.data_block_seconds", config.smtp.data_block_seconds)
    positive("smtp.data_max_seconds", config.smtp.data_max_seconds)
    positive("smtp.spool_threshold_bytes", config.smtp.spool_threshold_bytes)
    positive("smtp.memory_budget_bytes", config.smtp.memory_budget_bytes)
    positive("smtp.shutdown_grace_seconds", config.smtp.shutdown_grace_seconds)
    positive("relay.timeout_seconds", config.relay.timeout_seconds)
    positive("relay.max_age_hours", config.relay.max_age_hours)
    positive("relay.retry_initial_seconds", config.relay.retry_initial_seconds)
    positive("relay.retry_max_seconds", config.relay.retry_max_seconds)
    positive("relay.poll_seconds", config.relay.poll_seconds)
    positive("tickets.first_number", config.tickets.first_number)
    positive("web.search_ms", config.web.search_ms)
    positive("desk.wait_check_seconds", config.desk.wait_check_seconds)
    if config.tickets.reopen_days < 0:
        raise ConfigError(f"{src}: tickets.reopen_days: must not be negative")
    tag = config.tickets.subject_tag
    if not tag or any(c in tag for c in "[]#\r\n"):
        raise ConfigError(f"{src}: tickets.subject_tag: {tag!r} must be a word without [ ] #")
    if config.policy.sender_auth == "authres" and not config.smtp.authserv_id.strip():
        raise ConfigError(f"{src}: smtp.authserv_id: needed when policy.sender_auth = 'authres'")
    if config.policy.bounce_block_days < 0:
        raise ConfigError(f"{src}: policy.bounce_block_days: must not be negative")
    if config.policy.max_auto_replies_per_hour < 0:
        raise ConfigError(f"{src}: policy.max_auto_replies_per_hour: must not be negative")
    if config.policy.max_auto_replies_per_ticket_per_hour < 0:
        raise ConfigError(
            f"{src}: policy.max_auto_replies_per_ticket_per_hour: must not be negative"
        )
    if config.mail.secret and len(config.mail.secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"{src}: {ENV_SECRET}: must be at least {MIN_SECRET_CHARS} characters "
            f"(unset it to use a random secret kept in the data directory)"
        )
    _check_web(config)
    if config.relay.transport == "smtp" and not config.relay.host:
        raise ConfigError(f"{src}: relay.host: needed when relay.transport = 'smtp'")


def _check_web(config: Config) -> None:
    src, web = config.source, config.web
    if not 0 <= web.port <= 65535:
        raise ConfigError(f"{src}: web.port: {web.port} is not a port number")
    if not web.base_url.startswith(("http://", "https://")) or " " in web.base_url:
        raise ConfigError(f"{src}: web.base_url: {web.base_url!r} must start with http(s)://")
    for name, value in (
        ("web.confirm_hours", web.confirm_hours),
        ("web.session_idle_hours", web.session_idle_hours),
        ("web.ip_login_failures", web.ip_login_failures),
        ("web.address_login_failures", web.address_login_failures),
        ("web.ip_mail_requests", web.ip_mail_requests),
        ("web.header_timeout_seconds", web.header_timeout_seconds),
        ("web.max_connections", web.max_connections),
        ("web.max_connections_per_ip", web.max_connections_per_ip),
        ("web.body_idle_seconds", web.body_idle_seconds),
        ("web.body_min_rate", web.body_min_rate),
    ):
        if value <= 0:
            raise ConfigError(f"{src}: {name}: must be greater than 0, got {value}")
    try:
        zoneinfo.ZoneInfo(web.timezone)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigError(f"{src}: web.timezone: {web.timezone!r} is no known time zone") from None
    for entry in web.forwarded_allow_ips:
        try:
            if entry.strip() != "*":
                ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ConfigError(
                f"{src}: web.forwarded_allow_ips: {entry!r} is not an address, a network or *"
            ) from None
