"""Benchmark: reading a large directory through the ldap source, against a bare ldap3 search.

In one run it
  * loads N users (default 100,000) into a throwaway slapd with slapadd and starts it;
  * reads them with a bare ldap3 paged search (the floor: same attributes, same page size,
    ldap3's default decoding, values kept as (dn, mail, entryUUID) tuples and nothing else);
  * reads them the same bare way once more, with syncd's raw-values strategy
    (``syncd.directory.ldap_strategy``: entries decoded to bytes only, no second text copy),
    which shows how much of the source's time is its own processing;
  * reads them through the syncd ldap source (``LdapSource.read``: paging, decoding,
    normalisation, every completeness check, the snapshot), then plans the pass with
    ``syncd.plan.plan`` against an empty state store (every user becomes a provision action);
and prints the read times, the ratio source / bare ldap3 (target: at most 1.15), the ratio
source / raw-values read (syncd's own processing, no target), the plan time and the
process's peak memory (target: under 300 MB for the whole pass). Each read runs ``--rounds``
times, alternating, and the best time of each is kept (the machines are shared and noisy).
slapd is stopped and its files removed at the end, whatever happens.

    .venv/bin/python bench/ldap_read.py [--users 100000] [--page-size 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ldap3 import NONE, SUBTREE, Connection, Server

from syncd.config import parse_config
from syncd.directory.ldap import LdapSource
from syncd.directory.ldap_strategy import use_raw_values
from syncd.plan import Policy, plan

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the slapd launcher lives in tests/support/
    sys.path.insert(0, str(REPO))

from tests.support.slapd import Slapd  # noqa: E402

SUFFIX = "dc=bench,dc=example"
PEOPLE = f"ou=people,{SUFFIX}"
FILTER = "(objectClass=inetOrgPerson)"
PAGED_RESULTS = "1.2.840.113556.1.4.319"
RATIO_TARGET = 1.15
MEMORY_TARGET_MB = 300


def write_ldif(path: Path, users: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
                  "o: Bench\ndc: bench\n\n")
        out.write(f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n")
        for n in range(users):
            out.write(
                f"dn: uid=user{n:06d},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: user{n:06d}\n"
                f"cn: User {n}\nsn: {n}\nmail: User{n:06d}@Bench.Example\n"
                + ("employeeType: disabled\n" if n % 50 == 0 else "")
                + "\n"
            )


def bare_read(url: str, bind_dn: str, password: str, page_size: int, raw_only: bool = False) -> int:
    """The floor: a paged ldap3 search keeping (dn, mail, entryUUID) and nothing else
    (``raw_only``: with syncd's raw-values strategy instead of ldap3's own)."""
    connection = Connection(Server(url, get_info=NONE), bind_dn, password,
                            raise_exceptions=True, read_only=True, check_names=False)
    if raw_only:
        use_raw_values(connection)
    connection.open()
    connection.bind()
    rows: list[tuple[str, bytes, bytes]] = []
    cookie: bytes | None = None
    while True:
        connection.search(PEOPLE, FILTER, SUBTREE,
                          attributes=["mail", "entryUUID", "employeeType"],
                          paged_size=page_size, paged_cookie=cookie)
        for item in connection.response or ():
            if item["type"] == "searchResEntry":
                raw = item["raw_attributes"]
                rows.append((item["dn"], raw["mail"][0], raw["entryUUID"][0]))
        control = (connection.result.get("controls") or {}).get(PAGED_RESULTS)
        cookie = control["value"]["cookie"] if control else None
        if not cookie:
            break
    connection.unbind()
    return len(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="syncd-bench-slapd-"))
    root_password = secrets.token_urlsafe(16)
    with Slapd(folder, root_password=root_password, suffix=SUFFIX) as slapd:
        ldif = folder / "users.ldif"
        started = time.perf_counter()
        write_ldif(ldif, args.users)
        slapd.load(ldif)
        ldif.unlink()
        load_seconds = time.perf_counter() - started
        slapd.start()
        password_file = folder / "root.pass"
        password_file.write_text(root_password)
        password_file.chmod(0o600)
        config = parse_config({"directory": {"source": "ldap", "ldap": {
            "servers": [slapd.url], "allow_plaintext": True,
            "bind_dn": slapd.root_dn, "bind_password_file": str(password_file),
            "page_size": args.page_size,
            "search": [{"base_dn": PEOPLE, "filter": FILTER}],
            "disabled_attribute": "employeeType", "disabled_values": ["disabled"],
        }}}).directory.ldap
        assert config is not None

        bare_times: list[float] = []
        raw_times: list[float] = []
        source_times: list[float] = []
        plan_seconds = 0.0
        actions = users_read = bare_count = raw_count = 0
        for _ in range(args.rounds):
            started = time.perf_counter()
            bare_count = bare_read(slapd.url, slapd.root_dn, root_password, args.page_size)
            bare_times.append(time.perf_counter() - started)

            started = time.perf_counter()
            raw_count = bare_read(slapd.url, slapd.root_dn, root_password, args.page_size,
                                  raw_only=True)
            raw_times.append(time.perf_counter() - started)

            now = datetime.now(UTC)
            started = time.perf_counter()
            snapshot = LdapSource(config).read(now)
            source_times.append(time.perf_counter() - started)
            users_read = len(snapshot.users)

            started = time.perf_counter()
            the_plan = plan(snapshot, [], Policy(timedelta(days=30), "10%"), now)
            plan_seconds = time.perf_counter() - started
            actions = len(the_plan.actions)
            del snapshot, the_plan

    enabled = args.users - (args.users + 49) // 50  # every 50th user is disabled
    if not bare_count == raw_count == users_read == args.users or actions != enabled:
        print(f"error: read {bare_count} (bare) / {raw_count} (raw values) / {users_read} "
              f"(source) users and planned "
              f"{actions} actions; expected {args.users} users, {enabled} actions",
              file=sys.stderr)
        return 1
    bare, raw, source = min(bare_times), min(raw_times), min(source_times)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "users": args.users,
        "page_size": args.page_size,
        "slapadd_seconds": round(load_seconds, 2),
        "bare_ldap3_seconds": round(bare, 3),
        "raw_values_ldap3_seconds": round(raw, 3),
        "source_seconds": round(source, 3),
        "ratio": round(source / bare, 3),
        "ratio_to_raw_values_read": round(source / raw, 3),
        "plan_seconds": round(plan_seconds, 3),
        "planned_actions": actions,
        "peak_memory_mb": round(peak_mb, 1),
        "targets": {"ratio_at_most": RATIO_TARGET, "peak_memory_mb_below": MEMORY_TARGET_MB},
    }
    print(json.dumps(result, indent=2))
    ok = source / bare <= RATIO_TARGET and peak_mb < MEMORY_TARGET_MB
    print("targets met" if ok else "TARGET MISSED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
