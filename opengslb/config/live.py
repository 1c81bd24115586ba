"""The configuration in force: one holder every part reads, replaced by a reload."""

from __future__ import annotations

from opengslb.config.model import Config

__all__ = ["LiveConfig"]


class LiveConfig:
    """Holds the configuration in force; calling it returns that configuration.

    A reload replaces :attr:`current` on the reactor thread; readers call the
    holder each time they need a setting, so they see the new one at once.
    """

    def __init__(self, config: Config) -> None:
        self.current = config

    def __call__(self) -> Config:
        return self.current
