"""The errors syncd raises on purpose, each carrying a message a person can act on.

Every error a user can cause or fix derives from SyncdError; the command line turns it into
one line on stderr and the exit code it carries, never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_UNAVAILABLE = 4


class SyncdError(Exception):
    """Base of syncd's own errors: ``str(error)`` is the whole message for the user."""

    exit_code = EXIT_USAGE


class ConfigError(SyncdError):
    """The configuration (file, key, referenced file or secret) is wrong.

    ``where`` is the dotted key path (``kms.local.master_key_file``) or the file concerned.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


class SchemaOutdatedError(SyncdError):
    """The state store's schema is older (or newer) than this syncd's migrations."""


class UnavailableError(SyncdError):
    """Something syncd depends on is unavailable for now (the database is down or unreachable,
    the disk is full): nothing to fix in the configuration, trying again later may succeed."""

    exit_code = EXIT_UNAVAILABLE


class StateStoreError(SyncdError):
    """The state store refused an operation for a reason that is neither the configuration nor
    an outage (a constraint, a value it cannot hold): the command failed."""

    exit_code = EXIT_FAILURES


class LockHeldError(SyncdError):
    """Another syncd process holds the run lock."""

    exit_code = EXIT_LOCKED


class LockLostError(SyncdError):
    """This process lost the run lock during a pass: the pass stops at its next checkpoint."""

    exit_code = EXIT_LOCKED


class ClaimLostError(SyncdError):
    """A task this instance claimed was taken over by another instance of a shared group
    (its lease ended first): this instance records nothing more of it."""


class KMSError(SyncdError):
    """A key management operation failed or was refused."""


class KeyNotFoundError(KMSError):
    """No KMS object has the given id or label."""


class CertificateError(SyncdError):
    """A certificate, chain or PKCS#12 file is unusable or violates Google's S/MIME rules.

    ``violations`` lists every rule broken, one sentence each.
    """

    def __init__(self, message: str, violations: list[str] | None = None) -> None:
        self.violations = list(violations or [])
        if self.violations:
            message = f"{message}: " + "; ".join(self.violations)
        super().__init__(message)


class CANotImportedError(SyncdError):
    """No issuing CA has been imported yet."""


class PermanentError(SyncdError):
    """A failure that retrying will not fix: only a change of its input (the directory entry,
    the configuration) will. The runner records the task as failed permanently, without a next
    attempt, and the plan holds the user until a ``syncd resync``."""


class UncertifiableAddressError(CertificateError, PermanentError):
    """A user's address cannot go into an S/MIME certificate Gmail would match to the user."""


class KMSUnavailableError(KMSError, UnavailableError):
    """The KMS cannot be reached now (refused connection, timeout, dropped session): the
    pipeline retries the step; a command exits 1 (its work failed, nothing was written)."""

    exit_code = EXIT_FAILURES


class KMSRefusedError(KMSError, PermanentError):
    """The KMS answered and refused: TLS failure, authentication refused, permission denied,
    object not found, key not active, operation not supported. Retrying will not help; the
    message names the KMS, the operation and the object."""

    exit_code = EXIT_FAILURES

