"""What a command needs, opened lazily from the configuration: the state database (schema
checked), the run lock, the key manager and the audit log; and the collaborators of a pass
(``pass_context``). ``App`` is a context manager: ``close()`` releases what it opened.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cached_property
from types import TracebackType
from typing import Any, Self

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from syncd.config import Config
from syncd.credentials.issuers import list_issuers, load_issuer
from syncd.errors import (
    CANotImportedError,
    ConfigError,
    KMSError,
    KMSRefusedError,
    KMSUnavailableError,
    SyncdError,
)
from syncd.google.gmail import GmailCSE
from syncd.kms import KeyManager, Keyring, open_key_manager, open_keyring
from syncd.kms.local import load_master_key, verify_master_key
from syncd.pipeline.steps import Services
from syncd.pipeline.sync import PassContext
from syncd.pki.profile import LeafProfile
from syncd.plan import DesiredProfile, Policy
from syncd.state import audit, fencing
from syncd.state.db import Database, driver_message
from syncd.state.fencing import Fence
from syncd.state.instances import Membership
from syncd.state.lock import acquire
from syncd.state.models import Issuer


class App:
    """One command's view of the installation described by ``config``."""

    def __init__(self, config: Config, membership: Membership | None = None) -> None:
        self.config = config
        self._membership = membership
        """The daemon's membership of a shared group, or None: joined when first needed."""
        self._joined: Membership | None = None
        # Every keyring and key manager handed out, closed (again: closing is idempotent) by
        # close(); weak, so a long-lived App does not keep those its callers closed.
        self._opened: weakref.WeakSet[KeyManager | Keyring] = weakref.WeakSet()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the KMS connections this App opened and dispose of the database engine (if
        it was opened). The App may be used again afterwards: it reopens what it needs."""
        if self._joined is not None:
            self._joined.leave()
            self._joined = None
        opened = list(self._opened)
        self._opened.clear()
        for keys in opened:
            close = getattr(keys, "close", None)
            if callable(close):
                close()
        if "database" in self.__dict__:
            database = self.__dict__.pop("database")
            database.close()

    @property
    def membership(self) -> Membership | None:
        """This process's membership of the shared group (``state.shared``), or None: the only
        instance. A command joins for its own lifetime (until close())."""
        if not self.config.state.shared:
            return None
        if self._membership is not None:
            return self._membership
        if self._joined is None:
            self._joined = Membership(self.database, self.config.pipeline.workers).join()
        return self._joined

    @cached_property
    def database(self) -> Database:
        return Database.open(self.config.state.url, require_current=True)

    def key_manager(self, *, need_wrapping_key: bool = False) -> KeyManager:
        manager = open_key_manager(
            self.config, self.database.engine, need_wrapping_key=need_wrapping_key
        )
        self._opened.add(manager)
        return manager

    def keyring(self, *, need_wrapping_key: bool = False) -> Keyring:
        """The configured backend (new keys) and, opened when needed, those holding older
        keys (made before ``kms.backend`` changed)."""
        keys = open_keyring(self.config, self.database.engine, need_wrapping_key=need_wrapping_key)
        self._opened.add(keys)
        return keys

    def check_master_key(self) -> None:
        """Refuse (ConfigError) a master key other than the one the store's keys are sealed
        under, and record its check value if the store has none yet."""
        if self.config.kms.backend == "local":
            path = self.config.kms.local.master_key_file
            verify_master_key(self.database.engine, load_master_key(path), path)

    def check_kms(self) -> None:
        """Before a pass takes the run lock: the configured KMS answers, and the issuing CA's
        key is where the state store says (its public key is read). Raises one error naming
        the cause: KMSUnavailableError (unreachable, timeout), KMSRefusedError (TLS,
        authentication, permission, unknown key), ConfigError (settings)."""
        keys = self.keyring()
        try:
            try:
                issuer = load_issuer(self.database.sessions, self.config.ca.label)
            except CANotImportedError:
                issuer = None  # a pass that issues nothing can run without one
            if issuer is None or issuer.kms_backend != keys.name:
                keys.configured.locate("syncd:preflight")  # connects and authenticates
            if issuer is not None:
                issuer_kms = keys.holding(issuer.kms_backend)
                _check_issuer_key(issuer_kms, issuer.label, issuer.kms_private_key_id)
        finally:
            keys.close()

    @contextmanager
    def run_lock(self) -> Iterator[Fence]:
        """Hold the run lock: no other syncd process acts on this state meanwhile.

        Taking it increments the fencing token in the state store; the Fence yielded carries
        the token that this holder's checkpoints prove (see syncd.state.fencing). Every pass
        and every command that changes state takes it, so the master key is checked here
        first, before anything is touched.
        """
        self.check_master_key()
        database = self.database
        with acquire(self.config.state.url, lock_file=self.config.state.lock_file) as lock:
            try:
                with database.engine.begin() as connection:
                    token = fencing.take(connection, datetime.now(UTC))
            except DBAPIError as error:
                raise SyncdError(
                    f"cannot record the run lock in the state store at "
                    f"{database.display_url}: {driver_message(error)}"
                ) from None
            yield Fence(token, database.display_url, lock)

    def services(self) -> Services:
        """What the pipeline steps act on: KMS, Gmail, the issuing CA and the leaf profile."""
        config = self.config
        if not config.kacls.uri:
            raise ConfigError("kacls.uri", "required: Gmail needs it to reach the KACLS")
        policy = self.policy()
        gmail = GmailCSE(config.google)
        # Only a pass joins the group (pass_context): a check that opens the services does not.
        if (membership := self._membership or self._joined) is not None:
            membership.share(gmail.session.limiter)
        return Services(
            keys=self.keyring(need_wrapping_key=True),
            gmail=gmail,
            issuer=load_issuer(self.database.sessions, config.ca.label),
            profile=LeafProfile.from_config(config.certificate),
            kacls_uri=config.kacls.uri,
            key_bits=config.certificate.key_bits,
            clock=lambda: datetime.now(UTC),
            private_key_format=config.kacls.private_key_format,
            desired=self.desired_profile(),
            existing_credentials=config.policy.existing_credentials,
            issuers=tuple(list_issuers(self.database.sessions)),
            superseded_disable_after=policy.superseded_disable_after,
            obliterate_after=policy.obliterate_after,
        )

    def desired_profile(self) -> DesiredProfile:
        """What a certificate issued now carries (the ``certificate`` and ``ca`` sections)."""
        certificate = self.config.certificate
        return DesiredProfile(
            key_bits=certificate.key_bits,
            hash=certificate.hash,
            subject_template=certificate.subject_template,
            crl=tuple(certificate.crl_distribution_points),
            aia_ca_issuers=tuple(certificate.aia_ca_issuers),
            aia_ocsp=tuple(certificate.aia_ocsp),
            issuer=self.config.ca.label,
            include_aliases=certificate.include_aliases,
        )

    def policy(self, *, allow_mass_deprovision: bool = False) -> Policy:
        """The plan's policy from the configuration (certificate renewal, policy section)."""
        config = self.config
        return Policy(
            renew_before=timedelta(days=config.certificate.renew_before_days),
            max_deprovision=config.policy.max_deprovision,
            allow_mass_deprovision=allow_mass_deprovision,
            deprovision_after=timedelta(seconds=config.policy.deprovision_after),
            verify_every=timedelta(seconds=config.policy.verify_every),
            reissue_per_pass=config.policy.reissue_per_pass,
            profile=self.desired_profile(),
            superseded_disable_after=None
            if config.policy.superseded_disable_after is None
            else timedelta(seconds=config.policy.superseded_disable_after),
            obliterate_after=None
            if config.policy.obliterate_after_days is None
            else timedelta(days=config.policy.obliterate_after_days),
            existing_credentials=config.policy.existing_credentials,
            issuer_not_after=self._issuer_not_after(),
            max_new_per_pass=config.policy.max_new_per_pass,
            rollout_order=tuple(config.policy.rollout_order),
        )

    def _issuer_not_after(self) -> datetime | None:
        """When the issuing CA ``ca.label`` expires (None: not imported yet)."""
        with self.database.sessions() as session:
            return session.scalar(
                select(Issuer.not_after).where(Issuer.label == self.config.ca.label)
            )

    def pass_context(self, *, allow_mass_deprovision: bool = False) -> PassContext:
        """The collaborators of a pass (see syncd.pipeline.sync.PassContext); opens the
        database."""
        return PassContext(
            database=self.database,
            settings=self.config.pipeline,
            policy=self.policy(allow_mass_deprovision=allow_mass_deprovision),
            services=self.services,
            check_kms=self.check_kms,
            run_lock=self.run_lock,
            membership=self.membership,
            keep_finished_tasks=None
            if self.config.state.keep_finished_tasks is None
            else timedelta(seconds=self.config.state.keep_finished_tasks),
        )

    def audit(self, action: str, *, email: str | None = None, **detail: Any) -> None:
        with self.database.transaction() as session:
            audit.record(session, action, email=email, **detail)


def _check_issuer_key(kms: KeyManager, label: str, key_id: str) -> None:
    """The issuer's key is in ``kms``: its public key reads; a KMS error otherwise, naming it."""
    try:
        kms.public_key(key_id)
    except (KMSUnavailableError, KMSRefusedError):
        raise
    except KMSError as error:  # the embedded backend: no such key
        raise KMSRefusedError(
            f"issuing CA {label!r} (ca.label): its key {key_id} is not usable in the "
            f"{kms.name} KMS: {error}"
        ) from None
