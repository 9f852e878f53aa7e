"""The sandbox's data directory: its layout, the files an operator writes, the state it keeps.

Layout of ``DATA_DIR``::

    directory.yaml (or .json)   domain, customerId, users, groups (Directory API field names)
    trusted_roots.pem           roots a key pair's chain must end at
    service_accounts.json       registered service accounts: client_email, public keys, scopes
    faults.yaml (or .json)      optional fault settings applied at start (see faults.py)
    state/clock.json            how far the sandbox clock has been moved forward
    state/mailboxes.db          users' key pairs and identities (see mailboxes.py)

Operator files are re-read when they change on disk; files are written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syncd.errors import ConfigError
from syncd.sandbox.mailboxes import Mailboxes

T = TypeVar("T")

DIRECTORY_FILES = ("directory.yaml", "directory.yml", "directory.json")
FAULT_FILES = ("faults.yaml", "faults.yml", "faults.json")
ROOTS_FILE = "trusted_roots.pem"
ACCOUNTS_FILE = "service_accounts.json"


def stable_id(kind: str, email: str) -> str:
    """A numeric id derived from an address, shaped like Google's 21-digit ids."""
    digest = hashlib.sha256(f"{kind}:{email.lower()}".encode()).digest()
    return str(10**20 + int.from_bytes(digest[:8], "big") % (9 * 10**20))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DirectoryUser(_Model):
    primaryEmail: str
    id: str | None = None
    name: dict[str, str] | None = None
    suspended: bool = False
    archived: bool = False
    isAdmin: bool = False
    orgUnitPath: str = "/"
    isMailboxSetup: bool = True
    customSchemas: dict[str, dict[str, Any]] = {}
    aliases: list[str] = []
    """The user's alias addresses (Google's ``aliases``: returned only when there are some); a
    rename keeps the old primary address here, and calls naming an alias reach the mailbox."""

    @property
    def user_id(self) -> str:
        return self.id or stable_id("user", self.primaryEmail)


class GroupMember(_Model):
    email: str
    role: Literal["OWNER", "MANAGER", "MEMBER"] = "MEMBER"


class DirectoryGroup(_Model):
    email: str
    id: str | None = None
    name: str | None = None
    members: list[GroupMember | str] = []

    @property
    def group_id(self) -> str:
        return self.id or stable_id("group", self.email)

    def member_entries(self) -> list[GroupMember]:
        return [GroupMember(email=m) if isinstance(m, str) else m for m in self.members]


class DirectoryData(_Model):
    domain: str
    customerId: str = "C00sandbox"
    users: list[DirectoryUser] = []
    groups: list[DirectoryGroup] = []

    @cached_property
    def users_by_email(self) -> dict[str, DirectoryUser]:
        """Users by lower-cased primary address (the first of a duplicated one), then by
        alias (a primary address wins over an alias)."""
        found: dict[str, DirectoryUser] = {}
        for user in self.users:
            found.setdefault(user.primaryEmail.lower(), user)
        for user in self.users:
            for alias in user.aliases:
                found.setdefault(alias.lower(), user)
        return found

    def user(self, email: str) -> DirectoryUser | None:
        return self.users_by_email.get(email.lower())

    def group(self, key: str) -> DirectoryGroup | None:
        wanted = key.lower()
        return next(
            (g for g in self.groups if wanted in (g.email.lower(), g.group_id.lower())), None
        )


class AccountKey(_Model):
    private_key_id: str
    public_key_pem: str


class ServiceAccount(_Model):
    client_email: str
    client_id: str
    keys: list[AccountKey] = []
    scopes: list[str] = Field(default_factory=list)
    """The scopes granted through domain-wide delegation."""


class ServiceAccounts(_Model):
    accounts: list[ServiceAccount] = []

    def find(self, client_email: str) -> ServiceAccount | None:
        return next((a for a in self.accounts if a.client_email == client_email), None)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so a reader, a crash or a power cut never sees half a
    file (the file and its folder are fsynced)."""
    # One temporary name per process and thread: no other writer can share it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_structured(path: Path) -> Any:
    """Parse a YAML or JSON file (by its suffix); ConfigError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read sandbox data file: {exc}") from None


def _validated(model: type[T], path: Path, data: Any) -> T:
    try:
        return model.model_validate(data)  # type: ignore[attr-defined, no-any-return]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(str(path), f"{where}: {first['msg']}") from None


class _FileCache:
    """Parsed files, re-parsed when their size or modification time changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[tuple[int, int], Any]] = {}

    def get(self, path: Path, parse: Callable[[Path], T]) -> T:
        info = path.stat()
        stamp = (info.st_mtime_ns, info.st_size)
        with self._lock:
            cached = self._entries.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]  # type: ignore[no-any-return]
        value = parse(path)
        with self._lock:
            self._entries[path] = (stamp, value)
        return value


def _parse_directory(path: Path) -> DirectoryData:
    return _validated(DirectoryData, path, read_structured(path))


def _first_existing(data_dir: Path, names: tuple[str, ...]) -> Path | None:
    return next((data_dir / n for n in names if (data_dir / n).exists()), None)


class Store:
    """Reads the operator's files and keeps the sandbox's state in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._cache = _FileCache()
        self._directory_path: Path | None = None
        state = self.data_dir / "state"
        self._mailboxes = Mailboxes(state / "mailboxes.db", legacy_folder=state / "users")

    # --- operator files ----------------------------------------------------------------

    def directory(self) -> DirectoryData:
        """The directory file's users and groups (looked up for every request)."""
        path = self._directory_path
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                return self._cache.get(path, _parse_directory)
        path = _first_existing(self.data_dir, DIRECTORY_FILES)
        if path is None:
            raise ConfigError(str(self.data_dir), "no directory.yaml or directory.json")
        self._directory_path = path
        return self._cache.get(path, _parse_directory)

    def trusted_roots(self) -> list[x509.Certificate]:
        path = self.data_dir / ROOTS_FILE
        if not path.exists():
            return []

        def parse(p: Path) -> list[x509.Certificate]:
            try:
                return list(x509.load_pem_x509_certificates(p.read_bytes()))
            except ValueError as exc:
                raise ConfigError(str(p), f"not a PEM certificate bundle: {exc}") from None

        return self._cache.get(path, parse)

    def service_accounts(self) -> ServiceAccounts:
        path = self.data_dir / ACCOUNTS_FILE
        if not path.exists():
            return ServiceAccounts()
        return self._cache.get(path, lambda p: _validated(ServiceAccounts, p, read_structured(p)))

    def fault_file(self) -> dict[str, Any] | None:
        path = _first_existing(self.data_dir, FAULT_FILES)
        if path is None:
            return None
        data = read_structured(path)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ConfigError(str(path), "must be a mapping of fault settings")
        return data

    def write_directory(self, directory: DirectoryData) -> None:
        """Replace the directory file (in its own format) with ``directory``."""
        self.directory()  # finds the file, or ConfigError
        path = self._directory_path
        assert path is not None
        data = directory.model_dump(exclude_none=True, exclude_defaults=True)
        data["domain"] = directory.domain
        if path.suffix == ".json":
            write_json(path, data, mode=0o644)
        else:
            atomic_write(path, yaml.safe_dump(data, sort_keys=False).encode(), mode=0o644)

    # --- state -------------------------------------------------------------------------

    @property
    def mailboxes(self) -> Mailboxes:
        """Every user's Gmail state (keyed by primary address)."""
        return self._mailboxes

    def user_state(self, email: str) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """One user's Gmail state, locked for the block and saved if the block changed it."""
        return self._mailboxes.state(email)

    def clock_offset(self) -> float:
        path = self.data_dir / "state" / "clock.json"
        if not path.exists():
            return 0.0
        return float(json.loads(path.read_text())["offset_seconds"])

    def save_clock_offset(self, seconds: float) -> None:
        write_json(self.data_dir / "state" / "clock.json", {"offset_seconds": seconds})
