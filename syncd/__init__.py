"""syncd: keeps Gmail client-side encryption S/MIME credentials in step with a directory."""

__version__ = "0.1.0"
