"""The application layer: what a command opens from the configuration (``context.App``), the
one-user commands (``manual``, ``debug_cert``), setup checks and the ``syncd kms test`` probe.
Sits above ``syncd.pipeline``, which never imports it."""
