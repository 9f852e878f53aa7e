"""The application layer: what a command opens from the configuration (``context.App``), a
pass started from it (``passes``), the one-user commands (``manual``, ``debug_cert``), setup
checks (``setup``) and the ``syncd kms test`` probe (``kms_probe``). Sits above
``syncd.pipeline``, which never imports it."""
