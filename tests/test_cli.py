"""The command line (SPEC section 3): exit 0 ok / 1 failure / 2 usage, --json, CSV imports."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, make_mail, run_cli, write_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ticketmail.cli.customers import parse_customer_csv
from ticketmail.cli.users import parse_user_csv
from ticketmail.errors import UsageError
from ticketmail.storage.store import CustomerRow

Cli = Callable[..., subprocess.CompletedProcess[str]]

CUSTOMER_HEADER = "number,name,support_until,trial_until\n"
USER_HEADER = "email,customer,name,lang\n"


def clean(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """No command ever prints a Python traceback."""
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    return result


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return clean(result)


def failed(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The one stderr line of a command that exited with `status`."""
    clean(result)
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def tm(tmp_path: Path) -> Cli:
    """Run the real CLI against a fresh config and data dir in tmp_path."""
    path = write_config(tmp_path / "config.toml", tmp_path / "var", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(path), *args)

    return run


def as_json(tm: Cli, *args: str) -> Any:
    return json.loads(ok(tm(*args, "--json")).stdout)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- customers ----------------------------------------------------------------------------------


def test_customer_add_and_list(tm: Cli) -> None:
    """`customer add` stores dates; `customer list --json` shows number, name and both dates."""
    ok(tm("customer", "add", "10042", "Gymnasium Musterstadt", "--support-until", "2030-07-31"))
    ok(tm("customer", "add", "20001", "Grundschule Am Bach", "--trial-until", "2020-01-15"))
    ok(tm("customer", "add", "30003", "Ohne Vertrag"))
    listed = as_json(tm, "customer", "list")
    assert [
        {k: c[k] for k in ("number", "name", "support_until", "trial_until")} for c in listed
    ] == [
        {
            "number": "10042",
            "name": "Gymnasium Musterstadt",
            "support_until": "2030-07-31",
            "trial_until": None,
        },
        {
            "number": "20001",
            "name": "Grundschule Am Bach",
            "support_until": None,
            "trial_until": "2020-01-15",
        },
        {"number": "30003", "name": "Ohne Vertrag", "support_until": None, "trial_until": None},
    ]
    assert [c["supported"] for c in listed] == [True, False, False]
    table = ok(tm("customer", "list")).stdout
    assert "Gymnasium Musterstadt" in table
    assert table.splitlines()[0].startswith("NUMBER")


def test_customer_add_updates_an_existing_customer(tm: Cli) -> None:
    """Adding a customer number again updates its name and dates."""
    ok(tm("customer", "add", "10042", "Alter Name", "--support-until", "2020-01-01"))
    ok(tm("customer", "add", "10042", "Neuer Name", "--trial-until", "2031-01-01"))
    (only,) = as_json(tm, "customer", "list")
    assert (only["name"], only["support_until"], only["trial_until"]) == (
        "Neuer Name",
        None,
        "2031-01-01",
    )


def test_customer_add_bad_date(tm: Cli) -> None:
    """A date that is not YYYY-MM-DD: exit 2, one line naming option and value, nothing saved."""
    for option, value in [
        ("--support-until", "2026-02-30"),
        ("--trial-until", "31.12.2026"),
        ("--trial-until", "20260101"),
    ]:
        line = failed(tm("customer", "add", "10042", "Gymnasium", option, value), 2)
        assert option in line
        assert value in line
    assert as_json(tm, "customer", "list") == []


def test_customer_import(tm: Cli, tmp_path: Path) -> None:
    """`customer import` reads number,name,support_until,trial_until; dates may be empty."""
    path = write(
        tmp_path,
        "customers.csv",
        CUSTOMER_HEADER + "10042,Gymnasium Musterstadt,2030-07-31,\n"
        '20001,"Schule, Am Bach",,2027-01-01\n'
        "\n"
        '30003,"Name über\nzwei Zeilen",,\n',
    )
    assert "3 customers imported" in ok(tm("customer", "import", str(path))).stdout
    listed = as_json(tm, "customer", "list")
    assert [(c["number"], c["name"], c["support_until"], c["trial_until"]) for c in listed] == [
        ("10042", "Gymnasium Musterstadt", "2030-07-31", None),
        ("20001", "Schule, Am Bach", None, "2027-01-01"),
        ("30003", "Name über\nzwei Zeilen", None, None),
    ]
    one = write(tmp_path, "one.csv", CUSTOMER_HEADER + "40004,Realschule,,\n")
    assert ok(tm("customer", "import", str(one))).stdout == "1 customer imported\n"


def test_customer_import_bad_row_imports_nothing(tm: Cli, tmp_path: Path) -> None:
    """A bad row: exit 2 naming its line, and none of the rows (not even earlier ones) stored."""
    path = write(
        tmp_path,
        "customers.csv",
        CUSTOMER_HEADER + "10042,Gymnasium,2030-07-31,\n20001,Schule,,\n30003,Kaputt,2026-13-01,\n",
    )
    line = failed(tm("customer", "import", str(path)), 2)
    assert f"{path} line 4" in line
    assert "2026-13-01" in line
    assert as_json(tm, "customer", "list") == []


def test_customer_import_line_numbers_count_physical_lines(tm: Cli, tmp_path: Path) -> None:
    """Line numbers in errors are the file's lines, also after a cell holding a line break."""
    path = write(
        tmp_path,
        "customers.csv",
        CUSTOMER_HEADER + '10042,"Gymnasium\nMusterstadt",,\n20001,"Schule\u2028Bach",,\n'
        "30003,,,\n",
    )
    line = failed(tm("customer", "import", str(path)), 2)
    assert f"{path} line 5: name is empty" in line


def test_customer_import_refuses_bad_files(tm: Cli, tmp_path: Path) -> None:
    """A malformed file (header, field count, duplicate, empty number): exit 2 naming the line."""
    for text, expected in [
        ("", "empty file"),
        ("number,name\n1,A\n", "line 1: header"),
        (CUSTOMER_HEADER + "1,A,,\n2,B,,,\n", "line 3: expected 4 fields"),
        (CUSTOMER_HEADER + "1,A,,\n1,B,,\n", "line 3: customer 1 appears twice"),
        (CUSTOMER_HEADER + " ,A,,\n", "line 2: number is empty"),
    ]:
        path = write(tmp_path, "customers.csv", text)
        assert expected in failed(tm("customer", "import", str(path)), 2)
    assert as_json(tm, "customer", "list") == []


def test_customer_import_missing_or_binary_file(tm: Cli, tmp_path: Path) -> None:
    """A file that is missing or not UTF-8: exit 2, one line naming it."""
    missing = tmp_path / "missing.csv"
    assert str(missing) in failed(tm("customer", "import", str(missing)), 2)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(CUSTOMER_HEADER.encode() + b"1,\xff\xfe,,\n")
    assert "not UTF-8" in failed(tm("customer", "import", str(binary)), 2)


# --- users --------------------------------------------------------------------------------------


@pytest.fixture
def customers(tm: Cli) -> Cli:
    """The CLI with two institutions already registered."""
    ok(tm("customer", "add", "10042", "Gymnasium Musterstadt", "--support-until", "2030-01-01"))
    ok(tm("customer", "add", "20001", "Grundschule Am Bach", "--trial-until", "2030-01-01"))
    return tm


def test_user_add_and_list(customers: Cli) -> None:
    """`user add` stores address (case-folded), customer, name, lang; `user list` shows them."""
    tm = customers
    ok(tm("user", "add", "Anna@Schule.Example", "--customer", "10042", "--name", "Anna Müller",
          "--lang", "de"))  # fmt: skip
    ok(tm("user", "add", "ben@bach.example", "--customer", "20001", "--lang", "en"))
    ok(tm("user", "add", "carl@schule.example", "--customer", "10042"))
    assert as_json(tm, "user", "list") == [
        {
            "email": "anna@schule.example",
            "name": "Anna Müller",
            "lang": "de",
            "customer": "10042",
            "phone": "",
        },
        {
            "email": "carl@schule.example",
            "name": "",
            "lang": None,
            "customer": "10042",
            "phone": "",
        },
        {"email": "ben@bach.example", "name": "", "lang": "en", "customer": "20001", "phone": ""},
    ]
    only = as_json(tm, "user", "list", "--customer", "20001")
    assert [u["email"] for u in only] == ["ben@bach.example"]
    assert "does not exist" in failed(tm("user", "list", "--customer", "99999"), 1)
    assert "anna@schule.example" in ok(tm("user", "list")).stdout
    assert [c["users"] for c in as_json(tm, "customer", "list")] == [2, 1]


def test_user_add_unknown_customer(customers: Cli) -> None:
    """A user of a customer that does not exist: exit 1 (not found) with one clear line."""
    line = failed(customers("user", "add", "anna@schule.example", "--customer", "55555"), 1)
    assert "customer 55555 does not exist" in line
    assert as_json(customers, "user", "list") == []


def test_user_add_bad_email(customers: Cli) -> None:
    """An address that is not local@domain: exit 2, one line quoting it."""
    for address in ["anna", "anna@schule", "a@@schule.example", "<anna@schule.example>"]:
        line = failed(customers("user", "add", address, "--customer", "10042"), 2)
        assert f"{address!r} is not a mail address" in line
    assert as_json(customers, "user", "list") == []


def test_user_add_bad_language_or_missing_customer(customers: Cli) -> None:
    """--lang other than de|en, or no --customer: a usage error (exit 2)."""
    bad_lang = clean(customers("user", "add", "a@b.example", "--customer", "10042", "--lang", "fr"))
    assert bad_lang.returncode == 2
    no_customer = clean(customers("user", "add", "a@b.example"))
    assert no_customer.returncode == 2


def test_user_remove(customers: Cli) -> None:
    """`user remove` deletes a user (any case); an unknown address: exit 1 'does not exist'."""
    ok(customers("user", "add", "anna@schule.example", "--customer", "10042"))
    ok(customers("user", "remove", "ANNA@schule.example"))
    assert as_json(customers, "user", "list") == []
    line = failed(customers("user", "remove", "anna@schule.example"), 1)
    assert "does not exist" in line


def test_user_import(customers: Cli, tmp_path: Path) -> None:
    """`user import` reads email,customer,name,lang; lang may be empty; '1 user imported'."""
    path = write(
        tmp_path,
        "users.csv",
        USER_HEADER + "Anna@Schule.example,10042,Anna Müller,de\n"
        "ben@bach.example,20001,,EN\n"
        'carl@schule.example,10042,"Meyer, Carl",\n',
    )
    assert "3 users imported" in ok(customers("user", "import", str(path))).stdout
    assert as_json(customers, "user", "list") == [
        {
            "email": "anna@schule.example",
            "name": "Anna Müller",
            "lang": "de",
            "customer": "10042",
            "phone": "",
        },
        {
            "email": "carl@schule.example",
            "name": "Meyer, Carl",
            "lang": None,
            "customer": "10042",
            "phone": "",
        },
        {"email": "ben@bach.example", "name": "", "lang": "en", "customer": "20001", "phone": ""},
    ]
    one = write(tmp_path, "one.csv", USER_HEADER + "dora@bach.example,20001,,\n")
    assert ok(customers("user", "import", str(one))).stdout == "1 user imported\n"


def test_user_import_bad_row_imports_nothing(customers: Cli, tmp_path: Path) -> None:
    """A bad row (address, lang, duplicate, no customer): exit 2 naming its line; none imported."""
    good = "a@schule.example,10042,,\n"
    for rows, bad_line, words in [
        (good + "kaputt,10042,,\n", 3, "'kaputt' is not a mail address"),
        (good + "b@schule.example,10042,,fr\n", 3, "'fr'"),
        (good + "A@schule.example,10042,,\n", 3, "appears twice"),
        (good + "\nb@schule.example,,,\n", 4, "customer is empty"),
    ]:
        path = write(tmp_path, "users.csv", USER_HEADER + rows)
        line = failed(customers("user", "import", str(path)), 2)
        assert f"{path} line {bad_line}: " in line
        assert words in line
    assert as_json(customers, "user", "list") == []


def test_user_import_unknown_customer_names_its_line(customers: Cli, tmp_path: Path) -> None:
    """A row naming a customer that does not exist: the error names that row's line; none kept."""
    path = write(
        tmp_path,
        "users.csv",
        USER_HEADER + "a@schule.example,10042,,\n"
        "\n"
        'b@schule.example,10042,"Zwei\nZeilen",\n'
        "c@bach.example,77777,,\n"
        "d@bach.example,20001,,\n",
    )
    line = failed(customers("user", "import", str(path)), 2)
    assert f"{path} line 6:" in line
    assert "customer 77777 does not exist" in line
    assert as_json(customers, "user", "list") == []


def test_user_import_single_row_unknown_customer(customers: Cli, tmp_path: Path) -> None:
    """With only one row, an unknown customer still names line 2."""
    path = write(tmp_path, "users.csv", USER_HEADER + "a@schule.example,424242,,\n")
    line = failed(customers("user", "import", str(path)), 2)
    assert f"{path} line 2:" in line
    assert "424242" in line


# --- tickets, outbox, quarantine on an empty store ----------------------------------------------


def test_empty_lists(tm: Cli) -> None:
    """On an empty store every list is `[]` in JSON and a bare header as a table."""
    assert as_json(tm, "ticket", "list") == []
    ok(tm("customer", "add", "10042", "Gymnasium Musterstadt"))
    assert as_json(tm, "ticket", "list", "--customer", "10042", "--status", "open") == []
    assert as_json(tm, "outbox", "list") == []
    assert as_json(tm, "quarantine", "list") == []
    assert ok(tm("ticket", "list")).stdout.startswith("NUMBER")
    assert ok(tm("quarantine", "list")).stdout.startswith("ID")


def test_ticket_list_unknown_status_is_usage_error(tm: Cli) -> None:
    """`ticket list --status` accepts only new, open, answered, closed."""
    assert clean(tm("ticket", "list", "--status", "pending")).returncode == 2


@pytest.mark.parametrize("noun", ["ticket", "user"])
def test_list_of_unknown_or_empty_customer(tm: Cli, noun: str) -> None:
    """`ticket|user list --customer X`: exit 1 when X does not exist, exit 2 when X is empty."""
    assert failed(tm(noun, "list", "--customer", "55555"), 1) == (
        "ticketmail: customer 55555 does not exist"
    )
    assert "does not exist" in failed(tm(noun, "list", "--customer", "55555", "--json"), 1)
    for blank in ("", "  "):
        assert "--customer" in failed(tm(noun, "list", "--customer", blank), 2)
    ok(tm("customer", "add", "55555", "Grundschule"))
    assert as_json(tm, noun, "list", "--customer", " 55555 ") == []


def test_number_errors_name_the_noun_with_its_article(tm: Cli) -> None:
    """A malformed ID says 'is not an outbox ID', 'a held ID', ...: the right article."""
    for args, words in [
        (("outbox", "retry", "abc"), "'abc' is not an outbox ID"),
        (("held", "release", "abc"), "'abc' is not a held ID"),
        (("held", "drop", "x1"), "'x1' is not a held ID"),
        (("quarantine", "show", "abc"), "'abc' is not a quarantine ID"),
        (("ticket", "status", "abc", "open"), "'abc' is not a ticket number"),
    ]:
        assert failed(tm(*args), 2) == f"ticketmail: {words}"


@pytest.mark.sqlite_only  # SQLite's backup into a directory; pg_dump's: test_pg_storage
async def test_backup_counts_files_in_singular_and_plural(env: Env, tmp_path: Path) -> None:
    """`backup` says 'database and 0 files' with no blob, 'database and 1 file' with one."""
    none = ok(await env.cli("backup", str(tmp_path / "b0")))
    assert none.stdout == f"backup written to {tmp_path / 'b0'}: database and 0 files\n"
    code, _ = await env.send(make_mail("anna@schule.example", "Drucker druckt nicht"))
    assert code == 250  # a mail without attachments: one blob, its raw message
    one = ok(await env.cli("backup", str(tmp_path / "b1")))
    assert one.stdout == f"backup written to {tmp_path / 'b1'}: database and 1 file\n"


def test_ticket_show_missing_and_malformed(tm: Cli) -> None:
    """`ticket show 999`: exit 1 'does not exist'; a non-number: exit 2."""
    assert "does not exist" in failed(tm("ticket", "show", "999"), 1)
    assert "does not exist" in failed(tm("ticket", "show", "999", "--json"), 1)
    for text in ("abc", "²", "-5", ""):
        assert "is not a ticket number" in failed(tm("ticket", "show", text), 2)


def test_quarantine_retry_arguments(tm: Cli) -> None:
    """`quarantine retry` needs exactly one of ID and --all; an unknown ID: exit 1."""
    assert "ID or --all" in failed(tm("quarantine", "retry"), 2)
    assert "ID or --all" in failed(tm("quarantine", "retry", "3", "--all"), 2)
    assert "is not a quarantine ID" in failed(tm("quarantine", "retry", "abc"), 2)
    assert "does not exist" in failed(tm("quarantine", "retry", "99"), 1)
    assert ok(tm("quarantine", "retry", "--all")).stdout == ""


def test_quarantine_show_arguments(tm: Cli) -> None:
    """`quarantine show`: an unknown ID is exit 1, a non-number or no ID is exit 2; one line."""
    assert failed(tm("quarantine", "show", "99"), 1) == (
        "ticketmail: quarantine entry 99 does not exist"
    )
    assert "does not exist" in failed(tm("quarantine", "show", "99", "--json"), 1)
    for text in ("abc", "-1", "1.5", ""):
        assert "is not a quarantine ID" in failed(tm("quarantine", "show", text), 2)
    assert "required: ID" in failed(tm("quarantine", "show"), 2)


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (("frobnicate",), ""),
        ((), ""),
        (("customer",), "customer"),
        (("customer", "delete"), "customer"),
        (("ticket", "list", "-x"), "ticket list"),
        (("ticket", "status", "100001", "pending"), "ticket status"),
        (("ticket", "show"), "ticket show"),
        (("agent", "add", "eva@stueber.de"), "agent add"),
        (("user", "add", "a@b.example", "--customer", "1", "--lang", "fr"), "user add"),
        (("quarantine", "show", "1", "2"), "quarantine show"),
        (("--config",), ""),
    ],
)
def test_usage_error_is_one_line_naming_the_command(
    tm: Cli, args: tuple[str, ...], command: str
) -> None:
    """An unknown or missing command, argument or option: exit 2, one line naming its help."""
    line = failed(tm(*args), 2)
    where = f"ticketmail {command}".strip()
    assert line.startswith(f"ticketmail: {command}: " if command else "ticketmail: "), line
    assert line.endswith(f"; see '{where} --help'"), line
    assert "usage:" not in line


def test_help_still_prints_the_whole_help(tm: Cli) -> None:
    """`--help` prints the full help on stdout (usage, every verb) and exits 0."""
    top = ok(tm("--help")).stdout
    assert top.startswith("usage: ticketmail")
    assert "quarantine" in top
    verbs = ok(tm("quarantine", "--help")).stdout
    assert all(v in verbs for v in ("list", "show", "retry"))
    show = ok(tm("quarantine", "show", "--help")).stdout
    assert show.startswith("usage: ticketmail quarantine show")
    assert "--json" in show


# --- CSV robustness ----------------------------------------------------------------------------

_CELL = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)


def _records(header: str, rows: list[list[str]]) -> tuple[str, list[int]]:
    """CSV text with the header and rows, and the line each row starts on."""
    out = io.StringIO(newline="")
    out.write(header)
    starts: list[int] = []
    writer = csv.writer(out)
    for row in rows:
        starts.append(len(io.StringIO(out.getvalue(), newline="").readlines()) + 1)
        writer.writerow(row)
    return out.getvalue(), starts


def _parse(parser: Callable[[Path], list[Any]], text: str) -> tuple[list[Any], int | None]:
    """Run a CSV parser on `text`: (rows, None), or ([], the line its error names)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "import.csv"
        path.write_text(text, encoding="utf-8", newline="")
        try:
            return parser(path), None
        except UsageError as exc:
            error = str(exc)
    found = re.match(rf"{re.escape(str(path))} line (\d+): ", error)
    assert found, error
    return [], int(found[1])


_DATE_CELL = st.one_of(st.just(""), st.dates().map(date.isoformat), _CELL)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(_CELL, _CELL, _DATE_CELL, _DATE_CELL).map(list), max_size=5))
@example(rows=[["1", "a\u2028b", "", ""], ["2", "c", "", "20260101"]])
@example(rows=[["1", "a\x85b", "2026-01-31", ""], ["2", "x\ry", "", ""]])
def test_customer_csv_keeps_cells_or_names_the_line(rows: list[list[str]]) -> None:
    """Any cell contents: the rows come back cell for cell, or an error names a row's line."""
    text, starts = _records(CUSTOMER_HEADER, rows)
    parsed, line = _parse(parse_customer_csv, text)
    if line is not None:
        assert line in starts
        return
    kept = [r for r in rows if any(c.strip() for c in r)]
    assert parsed == [
        CustomerRow(
            r[0].strip(),
            r[1].strip(),
            date.fromisoformat(r[2].strip()) if r[2].strip() else None,
            date.fromisoformat(r[3].strip()) if r[3].strip() else None,
        )
        for r in kept
    ]


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(_CELL, min_size=4, max_size=4), max_size=4))
def test_user_csv_any_cells_parse_or_name_the_line(rows: list[list[str]]) -> None:
    """Any cell contents in a user file: parsed, or a UsageError naming a row's line."""
    text, starts = _records(USER_HEADER, rows)
    parsed, line = _parse(parse_user_csv, text)
    if line is not None:
        assert line in starts
        return
    assert [n for n, _ in parsed] == [
        s for s, r in zip(starts, rows, strict=True) if any(c.strip() for c in r)
    ]


_RAW = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_RAW)
@example(body='1,"never closed,,\n')
@example(body="1,A,,\n1,B,,\n")
def test_customer_import_never_prints_a_traceback(tm: Cli, tmp_path: Path, body: str) -> None:
    """Arbitrary text after the header: the real CLI imports it (0) or exits 2 naming a line."""
    path = tmp_path / "fuzz.csv"
    path.write_text(CUSTOMER_HEADER + body, encoding="utf-8")
    result = clean(tm("customer", "import", str(path)))
    if result.returncode == 0:
        assert re.fullmatch(r"\d+ customers? imported\n", result.stdout), result.stdout
    else:
        line = failed(result, 2)
        assert re.search(r" line \d+: ", line), line


async def test_ticket_show_counts_articles_per_ticket(env: Env) -> None:
    """`ticket show` numbers a ticket's articles from 1, whatever other tickets hold."""
    for subject in ("Drucker druckt nicht", "Beamer flackert"):
        code, _ = await env.send(make_mail("anna@schule.example", subject))
        assert code == 250
    shown = ok(await env.cli("ticket", "show", "100002")).stdout
    assert "--- article 1 of 1, in," in shown
    assert "article 2" not in shown
