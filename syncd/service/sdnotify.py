"""systemd's notify protocol (sd_notify(3)): newline-separated ``KEY=value`` lines in one
datagram to the unix socket named by ``$NOTIFY_SOCKET`` (``@`` means the abstract namespace).
Outside systemd the variable is unset and every call does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    """Send ``READY=1``, ``STATUS=...``, ``WATCHDOG=1`` etc.; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not lines:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    payload = "\n".join(line.replace("\n", " ") for line in lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError:
        return False
    return True


def watchdog_period() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000
