"""The GeoIP database: a client network's country, continent and record prefix.

``geoip.database`` names a MaxMind-format file (GeoLite2/GeoIP2 Country or
City, DB-IP's free country database, or one made with any MMDB writer),
read with the ``maxminddb`` library.  :class:`GeoIPLookup` is the one
object routing holds: it stays the same across reloads while the file
behind it is reopened (:meth:`GeoIPLookup.load`, on start and on every
configuration reload, so SIGHUP picks up a database updated in place).

A lookup returns the record's country and continent codes and the prefix
length of the database network holding the address — the ECS scope of a
GeoIP-steered answer is at least that long (SPEC §4.1).  Results are cached
per client network (bounded, cleared on reload), so a busy resolver's
clients cost one dictionary lookup each.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, NamedTuple, Optional, Tuple

import maxminddb

__all__ = ["GeoIPLookup", "GeoRecord", "GeoIPError", "open_reader"]

_CACHE_LIMIT = 100_000


class GeoIPError(Exception):
    """The database cannot be opened or read (the message says why)."""


class GeoRecord(NamedTuple):
    """What the database says about one address: codes (or None) and the record's prefix length."""

    country: Optional[str]
    continent: Optional[str]
    prefix: int


def _codes(record: Any) -> Tuple[Optional[str], Optional[str]]:
    if not isinstance(record, dict):
        return None, None
    country = None
    for key in ("country", "registered_country"):
        part = record.get(key)
        if isinstance(part, dict) and isinstance(part.get("iso_code"), str):
            country = part["iso_code"].upper()
            break
    continent = None
    part = record.get("continent")
    if isinstance(part, dict) and isinstance(part.get("code"), str):
        continent = part["code"].upper()
    return country, continent


def open_reader(path: str) -> Any:
    """A maxminddb reader of ``path`` (None for ``""``).  Any thread (a reload opens the file in
    its worker thread); raises GeoIPError when the file cannot be opened."""
    if not path:
        return None
    try:
        return maxminddb.open_database(path)  # the C extension when it is built
    except Exception as error:  # OSError, ValueError, maxminddb.InvalidDatabaseError
        raise GeoIPError(f"cannot read the GeoIP database {path!r}: {error}") from None


class GeoIPLookup:
    """A reopenable MaxMind database reader with a per-network cache.

    ``path`` may be empty (no database: every lookup says nothing, prefix 0).
    :meth:`load` raises :class:`GeoIPError` when the file cannot be opened.
    """

    def __init__(self, path: str = "") -> None:
        self.path = ""
        self._reader: Any = None
        self._cache: Dict[Tuple[int, int], GeoRecord] = {}
        self.generation = 0  # bumped whenever the database is (re)opened
        if path:
            self.load(path)

    @property
    def loaded(self) -> bool:
        return self._reader is not None

    def load(self, path: str) -> None:
        """Open ``path`` (``""``: close), replacing the database in use; the cache is cleared.

        On failure the previous database stays in use and GeoIPError is raised.
        """
        self.install(path, open_reader(path))

    def install(self, path: str, reader: Any) -> None:
        """Put ``reader`` (from :func:`open_reader` of ``path``) in use and close the old one."""
        old, self._reader, self.path = self._reader, reader, path
        self._cache = {}
        self.generation += 1
        if old is not None:
            try:
                old.close()
            except Exception:  # pragma: no cover - closing an mmap never matters to us
                pass

    def lookup(self, version: int, value: int) -> GeoRecord:
        """The record for the address ``value`` (an int of IP ``version``)."""
        key = (version, value)
        found = self._cache.get(key)
        if found is not None:
            return found
        reader = self._reader
        if reader is None:
            return GeoRecord(None, None, 0)
        address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
        try:
            record, prefix = reader.get_with_prefix_len(address)
        except ValueError:  # an IPv6 address asked of an IPv4-only database
            record, prefix = None, 0
        country, continent = _codes(record)
        result = GeoRecord(country, continent, int(prefix))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result

    def close(self) -> None:
        self.load("")
