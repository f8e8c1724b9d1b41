"""The login limits as a property (SPEC 8.2), on the storage functions over a real database
(either backend) with an injected clock: whatever others do, a user with a remembered
browser is never kept out, and no lock or reset ever lowers a source's count."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import writer_conn
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketmail.storage import accounts, logins
from ticketmail.storage.dialect import Conn
from ticketmail.web.security import hash_password

ANNA = "anna@schule.example"
ADDRESSES = (ANNA, "ben@schule.example", "guess@schule.example")
SOURCES = ("192.0.2.1", "192.0.2.2", "2001:db8::/64")
OTHER_DEVICES = (None, None, "thief-device", "ben-device")  # never Anna's own browser
ANNAS_DEVICE = "anna-device"
LIMITS = logins.LoginLimits(address_per_day=8, source_per_window=6)
WINDOW = timedelta(minutes=15)
START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
_HASH = hash_password("korrekt-pferd-batterie")

fail = st.tuples(
    st.just("fail"),
    st.sampled_from((ANNA, *ADDRESSES)),  # most at the user's address
    st.sampled_from(OTHER_DEVICES),
    st.sampled_from(SOURCES),
)
step = st.one_of(
    fail,
    fail,
    fail,  # failures are what the limits are about: most steps are one
    st.tuples(st.just("wait"), st.integers(min_value=0, max_value=120)),
    st.tuples(st.just("wait"), st.integers(min_value=0, max_value=40 * 60)),
    st.tuples(st.just("reset"), st.sampled_from(ADDRESSES)),
    st.tuples(st.just("anna_logs_in"), st.sampled_from(SOURCES)),
)


def _database(directory: str) -> Conn:
    conn = writer_conn(Path(directory))
    conn.execute("INSERT INTO customers(number, name, created_at) VALUES ('1', 'S', '2026')")
    for address in ADDRESSES:
        conn.execute(
            "INSERT INTO users(email, customer, created_at) VALUES (?, '1', '2026')", (address,)
        )
    return conn


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step, min_size=10, max_size=80))
def test_a_remembered_browser_is_never_kept_out_by_failures_made_elsewhere(
    steps: list[tuple[object, ...]],
) -> None:
    """Any sequence of failures (any address, browser and source), waits, resets and logins:
    the user's remembered browser is never refused, from any source, and a source's count
    of failures in the last 15 minutes is never lowered by locks or resets."""
    with tempfile.TemporaryDirectory() as directory:
        conn = _database(directory)
        try:
            now = START
            made: list[tuple[str, datetime]] = []  # (source, when) of every failure
            for action, *args in steps:
                if action == "fail":
                    email, device, source = args
                    assert isinstance(email, str)
                    assert isinstance(source, str)
                    assert device is None or isinstance(device, str)
                    logins.record_login_failure(conn, email, source=source, device=device, now=now)
                    made.append((source, now))
                elif action == "wait":
                    assert isinstance(args[0], int)
                    now += timedelta(seconds=args[0])
                elif action == "reset":
                    assert isinstance(args[0], str)
                    assert accounts.set_password(conn, args[0], _HASH, now=now)
                else:
                    logins.login_succeeded(conn, ANNA, device=ANNAS_DEVICE)
                for source in SOURCES:
                    refused = logins.login_blocked(
                        conn, ANNA, source=source, device=ANNAS_DEVICE, now=now, limits=LIMITS
                    )
                    assert refused is None, (source, refused)
                    recent = sum(1 for s, at in made if s == source and at > now - WINDOW)
                    for limit in range(1, 12):  # the count itself, through each threshold
                        at_most = logins.LoginLimits(address_per_day=99, source_per_window=limit)
                        stranger = logins.login_blocked(
                            conn, "new@x.example", source=source, device=None, now=now,
                            limits=at_most,
                        )  # fmt: skip
                        assert (stranger == "source") == (recent >= limit), (source, recent)
        finally:
            conn.close()
