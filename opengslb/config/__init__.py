"""The configuration file: loading, validation (``load``) and the model (``model``).

``load_config(path)`` and ``parse_config(text)`` return a frozen
:class:`Config` or raise :class:`ConfigError` listing every :class:`Problem`.
"""

from opengslb.config.load import ConfigError, Problem, load_config, parse_config
from opengslb.config.model import Config

__all__ = ["Config", "ConfigError", "Problem", "load_config", "parse_config"]
