"""A user's credential (key, certificate, PKCS#7, kaclsData) and the issuing CA it is signed
by. Below ``syncd.pipeline`` (its steps use them); above ``kms``, ``pki`` and ``state``."""
