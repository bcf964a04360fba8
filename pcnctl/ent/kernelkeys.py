"""The Linux kernel keyring, for the session cache of machines without a desktop keyring.

A headless server (the on-call sysadmin's ssh session, a bastion) has no Secret Service, so before this
every admin command logged in again and asked for a fresh MFA code. The kernel keeps keys in memory only,
per user, with an expiry: the cached session survives between commands of a shift, never touches the disk,
and is gone when it expires or the machine reboots. Keys go to the user's persistent keyring when the kernel
has one (it outlives the ssh connection), else to the user keyring.

Reached through ``libkeyutils`` with ctypes (the library ships with Debian's base system); when it is
missing or the kernel refuses, :meth:`KernelKeyring.open` gives None and pcnctl simply does not cache.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_USER_KEYRING = -4  # KEY_SPEC_USER_KEYRING
_PREFIX = "pcnctl:"


class KernelKeyring:
    """One user's kernel keyring, opened for the duration of a call."""

    def __init__(self, lib: ctypes.CDLL, ring: int) -> None:
        self._lib = lib
        self._ring = ring

    @classmethod
    def open(cls) -> KernelKeyring | None:
        name = ctypes.util.find_library("keyutils")
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            return None
        for fn in ("add_key", "keyctl_read_alloc", "keyctl_get_persistent", "keyctl_search"):
            getattr(lib, fn).restype = ctypes.c_long
        persistent = lib.keyctl_get_persistent(-1, _USER_KEYRING)
        return cls(lib, int(persistent) if persistent > 0 else _USER_KEYRING)

    def _find(self, name: str) -> int | None:
        # keyctl_search looks in this keyring and what it links, not in the process' own keyrings.
        key = self._lib.keyctl_search(self._ring, b"user", (_PREFIX + name).encode(), 0)
        return int(key) if key > 0 else None

    def put(self, name: str, value: str, ttl_s: int) -> bool:
        """Store ``value`` under ``name`` for ``ttl_s`` seconds; False when the kernel refused."""
        data = value.encode()
        key = self._lib.add_key(b"user", (_PREFIX + name).encode(), data, len(data), self._ring)
        if key <= 0:
            return False
        self._lib.keyctl_set_timeout(key, ttl_s)
        return True

    def get(self, name: str) -> str | None:
        key = self._find(name)
        if key is None:
            return None
        buffer = ctypes.c_void_p()
        size = self._lib.keyctl_read_alloc(key, ctypes.byref(buffer))
        if size < 0 or not buffer.value:
            return None
        try:
            return ctypes.string_at(buffer.value, size).decode()
        finally:
            ctypes.CDLL(None).free(buffer)

    def drop(self, name: str) -> None:
        key = self._find(name)
        if key is not None:
            self._lib.keyctl_invalidate(key)
