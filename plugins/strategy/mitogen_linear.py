"""Ansible's linear strategy run through Mitogen for Ansible (PyPI `mitogen`, in the project's
environment): one Python per host for the whole run instead of one per task. Measured on the
all-in-one host (docs/benchmarks.md): an idempotent re-run 31 s to 20 s, the host's CPU 16 s to 4.5 s.

ansible.cfg names this file, not mitogen's own (whose path depends on the environment's Python
version). Without mitogen installed, the plain linear strategy runs, with a warning: slower, same
result.
"""

from __future__ import annotations

from ansible.utils.display import Display

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:
    from ansible.plugins.strategy.linear import StrategyModule  # noqa: F401

    Display().warning("mitogen is not installed in this Python (uv sync installs it): running the plain "
                      "linear strategy, which is slower")
else:

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin,
                         ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)):
        pass
