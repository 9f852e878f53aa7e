"""The external KMS backend (``kms.backend: kmip``): KMIP operations over one of two transports.

``transport.py`` is the contract: the handful of KMIP operations syncd needs, each a method.
``binary.py`` speaks binary TTLV over TLS through PyKMIP's client (any KMIP server);
``json_ttlv.py`` and ``json_transport.py`` speak Cosmian KMS's JSON TTLV over HTTPS.
``manager.py`` is the KeyManager on top of either one (labels, wrapping, signing choices);
``probe.py`` is what ``syncd kms test`` runs.
"""
