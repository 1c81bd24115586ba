"""Hot reload (SIGHUP and POST /api/v1/config/reload).

The file is read and validated in a worker thread so a large configuration
never stalls the reactor.  The same thread also compares it with the running
configuration (:func:`share_unchanged`: unchanged regions, domains and zones
become the running objects, so applying it finds them by identity) and builds
its lookup indexes.  On success the whole configuration is swapped in one step
on the reactor thread, on failure the running one is kept and every problem is
logged.  Reloads are serialised.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from twisted.internet import defer, threads
from twisted.logger import Logger

from opengslb.config import Config, ConfigError, load_config
from opengslb.config.load import validate_cluster_requirements
from opengslb.config.model import share_unchanged

log = Logger(namespace="opengslb.reload")


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did: ``ok``, the problems when it failed, and notes
    such as settings that only take effect after a restart."""

    ok: bool
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    restart_required: List[str] = field(default_factory=list)


RESTART_ONLY = (
    ("dns.listen_address", lambda c: c.dns.listen_address),
    ("api.address", lambda c: (c.api.enabled, c.api.address)),
    ("metrics.address", lambda c: (c.metrics.enabled, c.metrics.address)),
    ("cluster", lambda c: (c.cluster.mode, c.cluster.bind_address, c.cluster.advertise_address,
                           c.cluster.raft.data_dir)),
)


class Reloader:
    """Reloads ``path`` into the running service.

    ``current`` returns the running configuration; ``adjust`` applies the
    command-line flags that beat the file; ``prepare`` computes, in the worker
    thread, what the new configuration's users derive from it alone;
    ``apply`` swaps a new configuration in (on the reactor thread).
    ``loader`` is the blocking file loader, run in the reactor's thread pool.
    """

    def __init__(self, reactor: Any, path: str, current: Callable[[], Config],
                 apply: Callable[[Config], None], adjust: Callable[[Config], Config] = lambda c: c,
                 loader: Callable[[str], Any] = load_config,
                 prepare: Callable[[Config], None] = lambda c: None) -> None:
        self._reactor = reactor
        self._path = path
        self._current = current
        self._apply = apply
        self._adjust = adjust
        self._prepare = prepare
        self._loader = loader
        self._lock = defer.DeferredLock()
        self.successes = 0
        self.failures = 0
        self.last_success: Optional[float] = None

    def reload(self) -> "defer.Deferred[ReloadOutcome]":
        """Reload now (after any reload already running); never fails."""
        return self._lock.run(self._reload_without_collector)

    @defer.inlineCallbacks
    def _reload_without_collector(self) -> Any:
        """:meth:`_reload` with the cyclic garbage collector paused.

        Every object of the configuration being built is young, and CPython
        runs a full collection each time young objects outnumber a quarter
        of the long-lived ones: a reload of a large file would run several,
        each holding the GIL (so pausing the reactor) for tens of
        milliseconds.  The new configuration holds no reference cycles, so
        nothing is lost by waiting (the service's ``apply`` then freezes it as
        long-lived, see :mod:`opengslb.service`).
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            return (yield self._reload())
        finally:
            if collecting:
                gc.enable()

    @defer.inlineCallbacks
    def _reload(self) -> Any:
        try:
            config, warnings = yield threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), self._load)
        except ConfigError as error:
            return self._failed([str(p) for p in error.problems])
        except Exception as error:  # an unexpected loader bug must not kill the service
            log.failure("unexpected error while reloading {path}", path=self._path)
            return self._failed([f"{self._path}: {error}"])
        previous = self._current()
        restart = [name for name, get in RESTART_ONLY if get(previous) != get(config)]
        try:
            self._apply(config)
        except Exception as error:
            log.failure("applying the reloaded configuration failed; keeping the old one")
            return self._failed([f"{self._path}: {error}"])
        self.successes += 1
        self.last_success = self._reactor.seconds()
        for name in restart:
            log.warn("configuration reload: {setting} changed; it takes effect after a restart",
                     setting=name, event="reload_restart_required")
        log.info("configuration reloaded from {path}: {domains} domains, {servers} servers",
                 path=self._path, domains=len(config.domains),
                 servers=sum(len(r.servers) for r in config.regions), event="reload", result="success")
        return ReloadOutcome(ok=True, warnings=list(warnings), restart_required=restart)

    def _load(self) -> Any:
        config, warnings = self._loader(self._path)
        config = self._adjust(config)
        problems = validate_cluster_requirements(config)
        if problems:
            raise ConfigError(problems)
        config = share_unchanged(config, self._current())  # the running config is immutable
        config.build_indexes()
        self._prepare(config)
        return config, warnings

    def _failed(self, errors: List[str]) -> ReloadOutcome:
        self.failures += 1
        for error in errors:
            log.error("configuration reload failed: {problem}", problem=error, event="reload",
                      result="failure")
        log.error("configuration reload failed with {count} problem(s); still running the previous "
                  "configuration", count=len(errors), event="reload", result="failure")
        return ReloadOutcome(ok=False, errors=errors)
