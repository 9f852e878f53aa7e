"""syncd's Google clients: Gmail CSE key pairs and identities, Directory lists; credentials,
retries and rate limiting shared by both."""

from syncd.google.directory import GoogleDirectory
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import GmailCSE, keypair_fingerprint
from syncd.google.retry import RetryPolicy

__all__ = ["GmailCSE", "GoogleAPIError", "GoogleDirectory", "RetryPolicy", "keypair_fingerprint"]
