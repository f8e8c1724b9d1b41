"""How ticketmail reads every corpus mail, dumped to JSON; two dumps compared as Markdown.

Not part of the test command. Run it before and after a change to the mail-reading modules
and compare:

    .venv/bin/python bench/corpus_diff.py dump before.json
    .venv/bin/python bench/corpus_diff.py dump after.json
    .venv/bin/python bench/corpus_diff.py diff before.json after.json > diff.md

Per mail it keeps the subject, sender, display name, filenames, a hash and the first 200
characters of the body text, and what the loop guard makes of it (bounce, automatic, the
signals, and for a bounce the status and the message ids it names). The mails are the
`message` rows of ../shared/corpus/MANIFEST.tsv and CPython's test_email mails vendored in
tests/fixtures.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
CPYTHON = REPO / "tests" / "fixtures" / "cpython-test_email"
# What the diff compares, in this order; the rest is shown for context.
FIELDS = ("subject", "sender", "from_name", "filenames", "body_sha", "bounce", "automatic")


def mail_paths() -> list[tuple[str, Path]]:
    """(name, path) of every corpus message and every CPython test mail."""
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8") as fh:
        rows = [r["local_path"] for r in csv.DictReader(fh, delimiter="\t")
                if r["kind"] == "message"]  # fmt: skip
    found = [(name, CORPUS / name) for name in rows]
    found += [(f"cpython-test_email/{p.name}", p) for p in sorted(CPYTHON.glob("msg_*.txt"))]
    return found


def read_one(raw: bytes) -> dict[str, Any]:
    """What ticketmail makes of one mail: the parsed fields and the loop guard's verdict."""
    from ticketmail.config import Config
    from ticketmail.intake.process import route_policy
    from ticketmail.intake.route import classify
    from ticketmail.mail.bounce import read_bounce
    from ticketmail.mail.parse import parse_mail

    mail = parse_mail(raw)
    cls = classify(mail, envelope_from="someone@example.org", policy=route_policy(Config()),
                   own_message_id=False)  # fmt: skip
    entry: dict[str, Any] = {
        "subject": mail.subject,
        "sender": mail.from_addr,
        "from_name": mail.from_name,
        "filenames": [a.filename for a in mail.attachments],
        "body_sha": hashlib.sha256(mail.body_text.encode("utf-8", "surrogatepass")).hexdigest(),
        "body_start": mail.body_text[:200],
        "bounce": cls.bounce,
        "automatic": cls.automatic,
        "reasons": list(cls.reasons),
    }
    if cls.bounce:
        report = read_bounce(raw, mail)
        entry["bounce_status"] = report.status
        entry["bounce_ids"] = list(report.message_ids)
    return entry


def dump(out: Path) -> None:
    result = {name: read_one(path.read_bytes()) for name, path in mail_paths()}
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    print(f"{len(result)} mails -> {out}", file=sys.stderr)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 160 else text[:157] + "..."


def diff(before: Path, after: Path, reasons: Path | None) -> str:
    """Markdown: every mail whose compared fields changed, old and new value, and why."""
    old = json.loads(before.read_text())
    new = json.loads(after.read_text())
    why: dict[str, str] = json.loads(reasons.read_text()) if reasons else {}
    lines = [f"# Corpus before/after ({len(old)} mails before, {len(new)} after)", ""]
    changed = 0
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            lines.append(f"- `{name}`: {'added' if a is None else 'removed'}")
            continue
        fields = [f for f in FIELDS if a.get(f) != b.get(f)]
        if not fields:
            continue
        changed += 1
        lines.append(f"- `{name}` — {why.get(name, '(no reason given)')}")
        for f in fields:
            shown = "body_start" if f == "body_sha" else f
            lines.append(f"  - {shown}: {_show(a.get(shown))} → {_show(b.get(shown))}")
        if "bounce" in fields or "automatic" in fields:
            lines.append(f"  - reasons: {_show(a.get('reasons'))} → {_show(b.get('reasons'))}")
    lines.insert(2, f"{changed} mails changed.")
    lines.insert(3, "")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="read every mail, write JSON")
    d.add_argument("out", type=Path)
    c = sub.add_parser("diff", help="compare two dumps as Markdown")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--reasons", type=Path, help="JSON {mail name: reason} to name each change")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.command == "dump":
        dump(args.out)
    else:
        sys.stdout.write(diff(args.before, args.after, args.reasons))


if __name__ == "__main__":
    main()
