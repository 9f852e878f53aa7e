"""Benchmark: an idle sync pass at 100,000 users, against reading the directory alone.

In one run, for each source (``ldap``: a throwaway slapd loaded with slapadd; ``static``: a YAML
file of the same users, or CSV with ``--static-format csv``), it
  * seeds the state store directly (SQLAlchemy Core inserts, no pipeline): every user the
    source lists, as a previous pass would have left them. The credentials are a SMALL POOL:
    4 real key pairs made in the local KMS and 4 real certificates issued by a test CA; each
    enabled user's active key pair row points at one of them (its KMS key ids, certificate,
    fingerprint). Every 50th user is disabled in the directory and holds no key pair. Nothing
    is seeded in the Gmail sandbox beyond the admin mailbox: an idle pass must not read Gmail;
  * records a previous sync pass that started just before each measured pass (moved there
    before each round), and marks every credential verified an hour ago, so that NO
    VERIFICATION IS DUE: issue 15's rotating verification makes a pass an interval after the
    previous one verify users x interval / policy.verify_every users, which is work, not idle;
  * seeds every user as last seen at seeding time: a pass rewrites a listed user's
    ``last_seen`` only once it is ``plan_state.LAST_SEEN_STEP`` (a day) old, so the measured
    passes write no user row. ``--last-seen-due`` moves every ``last_seen`` back two days
    before each pass instead: the once-a-day pass that rewrites them all;
  * measures the baseline and the pass, alternating, ``--rounds`` times, each in a child
    process of its own (so that each peak memory is its own), keeping the best time of each:
      - baseline: the bare read of the same entries (ldap: a paged ldap3 search keeping
        (dn, mail, entryUUID), as bench/ldap_read.py; static: parsing the whole file with
        ``yaml.load`` and libyaml's loader, or the csv module; the static source itself
        reads a YAML list item by item, syncd.directory.yaml_list);
      - the pass: ``syncd.app.passes.sync_pass`` in-process (the command minus start-up),
        timed per stage: read (the source), load state (``plan_state.load_views``), plan
        (``syncd.plan.plan``), record (``plan_state.record_snapshot``), and the rest (KMS
        check, run lock, run rows);
  * counts the writes: Google requests from the sandbox's stats endpoint (every request,
    writes apart), and KMS writes as the changes to the local KMS's key table (keys added,
    revoked, destroyed) across the child's passes;
and prints, per source, the ratio pass / baseline (target <= 1.5), the stages, the planned
actions (must be none), the writes (must be zero) and the peak RSS of the pass's process
(target < 300 MB; the interpreter with syncd imported is about 90 MB of it).
slapd and the sandbox are stopped and every file removed at the end, whatever happens.

    .venv/bin/python bench/scale.py [--users 100000] [--rounds 2] [--sources ldap,static]
        [--static-format yaml|csv] [--last-seen-due]
    .venv/bin/python bench/scale.py --users 2000        # a quick smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import func, insert, select, update

from syncd.app.context import App
from syncd.config import CertificateConfig, Config, load_config
from syncd.credentials.issuers import import_issuer
from syncd.directory import open_source
from syncd.kms.local import create_master_key
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile
from syncd.sandbox import create_service_account, init_sandbox_data
from syncd.state.db import Database
from syncd.state.models import KeyPair, KeyPairStatus, KmsKey, Run, User

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _path in (REPO, BENCH):  # tests/support (slapd, test CA) and bench/ldap_read.py
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ldap_read import FILTER, PEOPLE, SUFFIX, bare_read, write_ldif  # noqa: E402
from provision import _free_port, _wait_for  # noqa: E402

from tests.support.slapd import Slapd  # noqa: E402
from tests.support.testca import TestHierarchy, make_test_hierarchy  # noqa: E402

DOMAIN = "bench.example"
PASSWORD = b"bench"
POOL = 4
"""Real key pairs and certificates the seeded users share."""
TARGET_RATIO = 1.5
TARGET_MB = 300


# --- the parent: directory, sandbox, state store -------------------------------------------


def write_static(path: Path, users: int) -> None:
    """The same users as write_ldif (every 50th disabled), as a YAML list or a CSV file (by
    the file's suffix)."""
    with path.open("w", encoding="utf-8") as out:
        if path.suffix == ".csv":
            out.write("email,id,enabled\n")
            for n in range(users):
                out.write(f"user{n:06d}@bench.example,u{n:06d},{'false' if n % 50 == 0 else ''}\n")
            return
        out.write("users:\n")
        for n in range(users):
            out.write(f"- email: user{n:06d}@bench.example\n  id: u{n:06d}\n")
            if n % 50 == 0:
                out.write("  enabled: false\n")


def write_config(work: Path, name: str, directory: dict[str, Any], port: int) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "state": {"url": f"sqlite:///{work}/{name}.db"},
        "directory": directory,
        "kms": {"local": {"master_key_file": str(work / "master.key")}},
        "kacls": {"uri": "https://kacls.bench.example/google_cse",
                  "wrapping_key_file": str(work / "kacls.key")},
        "ca": {"label": "bench"},
        "certificate": {"key_bits": 2048},
        "google": {"service_account_key_file": str(work / "service-account.json"),
                   "endpoint": f"http://127.0.0.1:{port}/"},
        "policy": {"verify_every": "7d"},
        "logging": {"level": "WARNING"},
    }))
    return path


def seed(config: Config, hierarchy: TestHierarchy) -> int:
    """The state store as a previous pass left it: returns the number of users seeded."""
    Database.open(config.state.url, require_current=False).upgrade()
    app = App(config)
    now = datetime.now(UTC)
    assert hierarchy.issuer_p12 and hierarchy.root_pem
    keys = app.keyring()
    try:
        import_issuer(app.database.sessions, keys.configured, label="bench",
                      pkcs12_data=hierarchy.issuer_p12.read_bytes(), password=PASSWORD,
                      extra_chain_pem=hierarchy.root_pem.read_bytes(), now=now,
                      where="issuer.p12")
        profile = LeafProfile.from_config(CertificateConfig(key_bits=2048))
        pool = []
        for n in range(POOL):
            ref = keys.configured.create_key_pair(f"bench:pool:{n}", 2048)
            leaf = issue_leaf(f"pool{n}@{DOMAIN}", keys.configured.public_key(ref.public_key_id),
                              hierarchy.intermediate_cert, hierarchy.signer(profile.hash),
                              profile, now)
            pool.append((ref, leaf))
    finally:
        keys.close()
    snapshot = open_source(config.directory, config.google).read(now)
    record = app.desired_profile().record(())
    with app.database.transaction() as session:
        session.execute(insert(User), [
            {"email": u.email, "directory_id": u.directory_id, "source": snapshot.source,
             "in_scope": True, "enabled": u.enabled, "first_seen": now - timedelta(days=30),
             "last_seen": now, "aliases": list(u.aliases)}
            for u in snapshot.users
        ])
        ids = {row.email: row.id for row in session.execute(select(User.email, User.id))}
        rows = []
        for n, user in enumerate(u for u in snapshot.users if u.enabled):
            ref, leaf = pool[n % POOL]
            rows.append({
                "user_id": ids[user.email], "generation": 1, "status": KeyPairStatus.ACTIVE,
                "kms_label": f"syncd:{user.email}:g1:seeded", "kms_backend": "local",
                "kms_private_key_id": ref.private_key_id, "kms_public_key_id": ref.public_key_id,
                "key_bits": 2048, "certificate_pem": leaf.public_bytes(
                    serialization.Encoding.PEM).decode(),
                "fingerprint_sha256": leaf.fingerprint(hashes.SHA256()).hex(),
                "serial_hex": format(leaf.serial_number, "x"),
                "not_before": leaf.not_valid_before_utc, "not_after": leaf.not_valid_after_utc,
                "gmail_key_pair_id": f"seeded-{n % POOL}", "private_key_format": "pkcs8",
                "verified_at": now - timedelta(hours=1), "profile": record, "origin": "syncd",
                "created_at": now - timedelta(days=30),
            })
        session.execute(insert(KeyPair), rows)
        session.add(Run(kind="sync", started_at=now, finished_at=now, outcome="ok",
                        host="bench", pid=0, summary={}))
    return len(snapshot.users)


def kms_state(config: Config) -> dict[str, int]:
    """What a KMS write would change in the local KMS: keys, revoked ones, destroyed ones."""
    database = Database.open(config.state.url)
    with database.sessions() as session:
        return {
            "keys": session.scalar(select(func.count()).select_from(KmsKey)) or 0,
            "revoked": session.scalar(select(func.count()).where(
                KmsKey.revoked_at.is_not(None))) or 0,
            "destroyed": session.scalar(select(func.count()).where(
                KmsKey.destroyed_at.is_not(None))) or 0,
        }


def sandbox_call(port: int, path: str, method: str = "GET") -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/sandbox/v1/{path}", method=method,
                                     data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


def google_requests(stats: dict[str, Any]) -> tuple[int, int]:
    """(all requests, writes) in a stats snapshot: a write is any method but a get or list."""
    methods = stats.get("methods", {})
    total = sum(int(m.get("requests", 0)) for m in methods.values())
    writes = sum(int(m.get("requests", 0)) for name, m in methods.items()
                 if not name.rsplit(".", 1)[-1].startswith(("get", "list")))
    return total, writes


def _child(kind: str, part: str, config_path: Path, bare: dict[str, Any],
           last_seen_due: bool = False) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--part", part, "--config",
         str(config_path), "--bare", json.dumps(bare)]
        + (["--last-seen-due"] if last_seen_due else []),
        capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: the {kind} {part} child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(kind: str, config_path: Path, config: Config, rounds: int, port: int,
            bare: dict[str, Any], last_seen_due: bool = False) -> dict[str, Any]:
    """Baseline and pass, alternating, each in a child process of its own (so each peak
    memory is its own); the best time of each is kept. Adds the writes the passes caused."""
    kms_before = kms_state(config)
    sandbox_call(port, "stats:reset", "POST")
    baselines, passes = [], []
    for _ in range(rounds):
        baselines.append(_child(kind, "baseline", config_path, bare))
        passes.append(_child(kind, "pass", config_path, bare, last_seen_due))
    total, writes = google_requests(sandbox_call(port, "stats"))
    kms_after = kms_state(config)
    base = min(baselines, key=lambda r: r["seconds"])
    best = min(passes, key=lambda r: r["seconds"])
    stages = dict(best["stages"])
    stages["other"] = round(best["seconds"] - sum(stages.values()), 3)
    return {
        "source": kind,
        "entries": base["entries"],
        "baseline_seconds": base["seconds"],
        "pass_seconds": best["seconds"],
        "ratio": round(best["seconds"] / base["seconds"], 3),
        "stages_seconds": stages,
        "planned": best["planned"],
        "all_rounds_idle": all(not p["planned"]["actions"] and not p["planned"]["tasks"]
                               for p in passes),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in passes),
        "baseline_peak_rss_mb": max(b["peak_rss_mb"] for b in baselines),
        "google_requests": total,
        "google_writes": writes,
        "kms_writes": sum(abs(kms_after[k] - kms_before[k]) for k in kms_after),
    }


# --- the child: one source's baseline and idle passes --------------------------------------


class Timer:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - started
        return timed


@contextmanager
def stage_timers(timer: Timer) -> Iterator[None]:
    """Time the pass's stages by wrapping the functions sync_pass calls (benchmark only)."""
    import syncd.app.passes as passes
    import syncd.pipeline.plan_state as plan_state
    import syncd.pipeline.sync as sync

    originals = (passes.open_source, plan_state.load_views, sync.plan,
                 plan_state.record_snapshot)

    def timed_source(*args: Any, **kwargs: Any) -> Any:
        source = originals[0](*args, **kwargs)
        source.read = timer.wrap("read", source.read)
        return source

    passes.open_source = timed_source  # type: ignore[assignment]
    plan_state.load_views = timer.wrap("load_state", plan_state.load_views)  # type: ignore[assignment]
    sync.plan = timer.wrap("plan", sync.plan)  # type: ignore[assignment]
    plan_state.record_snapshot = timer.wrap(  # type: ignore[assignment]
        "record", plan_state.record_snapshot)
    try:
        yield
    finally:
        (passes.open_source, plan_state.load_views, sync.plan,
         plan_state.record_snapshot) = originals  # type: ignore[assignment]


def baseline(kind: str, config: Config, bare: dict[str, Any]) -> Callable[[], int]:
    if kind == "ldap":
        return lambda: bare_read(bare["url"], bare["bind_dn"], bare["password"],
                                 bare["page_size"])
    assert config.directory.static is not None
    path = config.directory.static.path
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def parse() -> int:
        with open(path, encoding="utf-8", newline="") as handle:
            if path.suffix == ".csv":
                return len(list(csv.DictReader(handle)))
            return len(yaml.load(handle.read(), Loader=loader)["users"])
    return parse


def no_verification_due(app: App) -> None:
    """Move the previous sync pass's start to now: the next pass has no verification due."""
    with app.database.transaction() as session:
        last = session.scalar(select(func.max(Run.id)).where(Run.kind == "sync"))
        session.execute(update(Run).where(Run.id == last).values(started_at=datetime.now(UTC)))


def last_seen_due(app: App) -> None:
    """Every user last seen two days ago: the next pass rewrites every listed user's."""
    with app.database.transaction() as session:
        session.execute(update(User).values(last_seen=datetime.now(UTC) - timedelta(days=2)))


def peak_rss_kb() -> int:
    """This process's own peak RSS: VmHWM, which a new program starts afresh (ru_maxrss is
    carried over from the parent across fork and exec, and the parent seeded 100,000 users)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: an upper bound


def child(kind: str, part: str, config_path: Path, bare: dict[str, Any],
          due: bool = False) -> int:
    """One baseline read or one idle pass, printed as JSON with this process's peak RSS."""
    from syncd.app.passes import sync_pass

    config = load_config(config_path)
    figures: dict[str, Any] = {}
    if part == "baseline":
        read_bare = baseline(kind, config, bare)
        started = time.perf_counter()
        figures["entries"] = read_bare()
        figures["seconds"] = round(time.perf_counter() - started, 3)
    else:
        app = App(config)
        no_verification_due(app)
        if due:
            last_seen_due(app)
        timer = Timer()
        with stage_timers(timer):
            started = time.perf_counter()
            result = sync_pass(app)
            figures["seconds"] = round(time.perf_counter() - started, 3)
        app.close()
        figures["stages"] = {name: round(seconds, 3) for name, seconds in timer.stages.items()}
        figures["planned"] = {"actions": result.plan.counts(), "held": len(result.plan.held),
                              "tasks": len(result.results), "clean": result.clean}
    figures["peak_rss_mb"] = round(peak_rss_kb() / 1024, 1)
    print(json.dumps(figures))
    return 0


# --- main -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    hierarchy = make_test_hierarchy(work / "ca", password=PASSWORD)
    root_pem = hierarchy.root_cert.public_bytes(serialization.Encoding.PEM)
    init_sandbox_data(work / "sandbox", DOMAIN, [f"admin@{DOMAIN}"], root_pem)
    port = _free_port()
    key = create_service_account(work / "sandbox", "syncd@bench.iam.gserviceaccount.com",
                                 f"http://127.0.0.1:{port}/token")
    (work / "service-account.json").write_text(json.dumps(key))
    (work / "kacls.key").write_bytes(os.urandom(32))
    for secret in ("service-account.json", "kacls.key"):
        (work / secret).chmod(0o600)
    create_master_key(work / "master.key")
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "syncd", "sandbox", "serve", "--port", str(port),
         "--data", str(work / "sandbox")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        _wait_for(port, sandbox)
        for kind in args.sources.split(","):
            started = time.perf_counter()
            if kind == "ldap":
                root_password = secrets.token_urlsafe(16)
                with Slapd(work / "slapd", root_password=root_password, suffix=SUFFIX) as slapd:
                    write_ldif(work / "users.ldif", args.users)
                    slapd.load(work / "users.ldif")
                    slapd.start()
                    (work / "root.pass").write_text(root_password)
                    (work / "root.pass").chmod(0o600)
                    directory = {"source": "ldap", "ldap": {
                        "servers": [slapd.url], "allow_plaintext": True,
                        "bind_dn": slapd.root_dn, "bind_password_file": str(work / "root.pass"),
                        "page_size": args.page_size,
                        "search": [{"base_dn": PEOPLE, "filter": FILTER}],
                        "disabled_attribute": "employeeType", "disabled_values": ["disabled"]}}
                    bare = {"url": slapd.url, "bind_dn": slapd.root_dn,
                            "password": root_password, "page_size": args.page_size}
                    results.append(one_source(args, work, kind, directory, port, hierarchy,
                                              bare, started))
            elif kind == "static":
                static = work / f"users.{args.static_format}"
                write_static(static, args.users)
                directory = {"source": "static", "static": {"path": str(static)}}
                results.append(one_source(args, work, kind, directory, port, hierarchy, {},
                                          started))
            else:
                raise SystemExit(f"bench: unknown source {kind!r} (ldap, static)")
    finally:
        sandbox.send_signal(signal.SIGINT)
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sandbox.kill()
            sandbox.wait()
    return results


def one_source(args: argparse.Namespace, work: Path, kind: str, directory: dict[str, Any],
               port: int, hierarchy: TestHierarchy, bare: dict[str, Any],
               started: float) -> dict[str, Any]:
    config_path = write_config(work, kind, directory, port)
    config = load_config(config_path)
    seeded = seed(config, hierarchy)
    seed_seconds = time.perf_counter() - started
    result = measure(kind, config_path, config, args.rounds, port, bare, args.last_seen_due)
    result["seeded_users"] = seeded
    result["seed_seconds"] = round(seed_seconds, 1)
    show(result)
    return result


def met(r: dict[str, Any]) -> bool:
    idle = r["all_rounds_idle"] and not r["planned"]["actions"]
    zero = r["google_requests"] == 0 and r["kms_writes"] == 0
    return bool(r["ratio"] <= TARGET_RATIO and r["peak_rss_mb"] < TARGET_MB and idle and zero)


def show(r: dict[str, Any]) -> None:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_seconds"].items())
    print(f"\n[{r['source']}] {r['entries']} entries, {r['seeded_users']} users seeded "
          f"({r['seed_seconds']:.0f} s with the directory)")
    print(f"  baseline (bare read): {r['baseline_seconds']:.2f} s; idle pass: "
          f"{r['pass_seconds']:.2f} s; ratio {r['ratio']:.2f} (target <= {TARGET_RATIO})")
    print(f"  stages (s): {stages}")
    print(f"  planned: {r['planned']['actions'] or 'nothing'}, held {r['planned']['held']}, "
          f"tasks {r['planned']['tasks']}")
    print(f"  Google requests: {r['google_requests']} (writes {r['google_writes']}); "
          f"KMS writes: {r['kms_writes']}")
    print(f"  peak memory (RSS of the pass's process): {r['peak_rss_mb']:.0f} MB "
          f"(target < {TARGET_MB}); the baseline's process: "
          f"{r['baseline_peak_rss_mb']:.0f} MB")
    print(f"  {'targets met' if met(r) else 'TARGET MISSED'}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--sources", default="ldap,static")
    parser.add_argument("--static-format", choices=["yaml", "csv"], default="yaml",
                        help="the static source's file (default yaml)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--last-seen-due", action="store_true",
                        help="measure the once-a-day pass that rewrites every last_seen")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["baseline", "pass"], help=argparse.SUPPRESS)
    parser.add_argument("--bare", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.part, args.config, json.loads(args.bare),
                     args.last_seen_due)

    print(f"users: {args.users} (every 50th disabled, no credential), rounds: {args.rounds}; "
          f"state seeded directly: every enabled user's active key pair points at one of "
          f"{POOL} real KMS keys and certificates; nothing in Gmail; no verification due; "
          + ("every last_seen due (the once-a-day pass)" if args.last_seen_due
             else "last_seen within plan_state.LAST_SEEN_STEP (no user row rewritten)"))
    with tempfile.TemporaryDirectory(prefix="syncd-bench-scale-") as tmp:
        results = run(args, Path(tmp))
    ok = all(met(r) for r in results)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
