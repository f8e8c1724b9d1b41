"""The corpus's bounces and out-of-office mails are recognised, so none would open a ticket."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import CORPUS

from ticketmail.config import Config
from ticketmail.intake.process import route_policy
from ticketmail.intake.route import classify
from ticketmail.mail.bounce import read_bounce
from ticketmail.mail.parse import parse_mail

_SELECT = re.compile(r"bounce|dsn|vacation|autorep|out.of.office|multipart_report|delivery", re.I)
# Mails in those folders that are no bounce and no automatic reply (spam, a virus), so that
# not recognising them is right.
_NOT_AUTOMATIC = {
    "bounceparser/t/corpus/spam-bogus-email-in-report.msg",
    "bounceparser/t/corpus/spam-lots-of-bogus-addresses.msg",
    "bounceparser/t/corpus/spam-with-badly-parsed-email.msg",
    "bounceparser/t/corpus/spam-with-image.msg",
    "bounceparser/xt/corpus/virus-caused-multiple-weird-reports.msg",
}


def bounce_and_vacation_mails() -> list[Path]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        pytest.skip(f"corpus not found at {CORPUS} (it sits beside the repository in CI)")
    with manifest.open(encoding="utf-8") as fh:
        rows = [r["local_path"] for r in csv.DictReader(fh, delimiter="\t")
                if r["kind"] == "message"]  # fmt: skip
    return [CORPUS / p for p in rows if p.startswith("bounceparser/") or _SELECT.search(p)]


def test_corpus_bounces_and_vacations_are_recognised(capsys: pytest.CaptureFixture[str]) -> None:
    """Every bounce or out-of-office mail of the corpus is a bounce or automatic to the guard."""
    policy = route_policy(Config())
    table: Counter[tuple[str, str]] = Counter()
    missed: list[str] = []
    for path in bounce_and_vacation_mails():
        raw = path.read_bytes()
        mail = parse_mail(raw)
        # A registered-looking envelope sender: detection, not a null sender, must decide.
        cls = classify(mail, envelope_from="someone@example.org", policy=policy,
                       own_message_id=False)  # fmt: skip
        name = str(path.relative_to(CORPUS))
        folder = name.split("/", 1)[0]
        kind = "bounce" if cls.bounce else "automatic" if cls.automatic else "not recognised"
        table[(folder, kind)] += 1
        if cls.bounce:
            table[(folder, "bounce with status")] += bool(read_bounce(raw, mail).status)
        if kind == "not recognised" and name not in _NOT_AUTOMATIC:
            missed.append(name)
    with capsys.disabled():
        print("\nbounce/vacation corpus:")
        for (folder, kind), count in sorted(table.items()):
            print(f"  {folder:<24} {kind:<20} {count:>4}")
    assert missed == []
    assert sum(n for (_, k), n in table.items() if k == "bounce") >= 144
    assert sum(n for (_, k), n in table.items() if k == "bounce with status") >= 134


def _corpus_mail(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus file {name} not found under {CORPUS}")
    return path.read_bytes()


def test_corpus_challenge_response_request_is_automatic() -> None:
    """Bluebottle's "please verify you are a person" request is automatic mail, not a bounce."""
    mail = parse_mail(_corpus_mail("bounceparser/t/corpus/bluebottle.msg"))
    cls = classify(mail, envelope_from="support@bluebottle.com", policy=route_policy(Config()),
                   own_message_id=False)  # fmt: skip
    assert cls.automatic
    assert not cls.bounce
    assert "challenge-response" in cls.reasons


def test_corpus_exim_refusal_with_null_from_is_a_bounce() -> None:
    """warning-5.msg (Exim: "not a valid user here", From: <>) is a bounce, as BounceParser says."""
    mail = parse_mail(_corpus_mail("bounceparser/t/corpus/warning-5.msg"))
    cls = classify(mail, envelope_from="someone@example.org", policy=route_policy(Config()),
                   own_message_id=False)  # fmt: skip
    assert cls.bounce
    assert "null-from" in cls.reasons
