"""eraselab's core: CLI, configuration, registries, catalogs, runner, storage and the mini world."""

__version__ = "0.1.0"
