"""Ansible's linear strategy run through Mitogen for Ansible (PyPI `mitogen`, in the project's
environment): one Python per host for the whole run instead of one per task. Measured on the
all-in-one host (docs/benchmarks.md): an idempotent re-run 31 s to 20 s, the host's CPU 16 s to 4.5 s.

ansible.cfg names this file, not mitogen's own (whose path depends on the environment's Python
version). Without mitogen installed, the plain linear strategy runs, with a warning: slower, same
result.
"""

from __future__ import annotations

import getpass

from ansible.utils.display import Display

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:
    from ansible.plugins.strategy.linear import StrategyModule  # noqa: F401

    Display().warning("mitogen is not installed in this Python (uv sync installs it): running the plain "
                      "linear strategy, which is slower")
else:
    import ansible_mitogen.transport_config

    _connection_remote_user = ansible_mitogen.transport_config.PlayContextSpec.remote_user

    def _remote_user(self):
        """Ansible's own local connection logs in as whoever runs ansible-playbook, so `become: true`
        to root as root is no become at all; Mitogen reads no user there and runs sudo, which a root
        controller may not have ("No such file or directory: 'sudo'"). Same user, same answer."""
        user = _connection_remote_user(self)
        if not user and self.transport() == "local":
            return getpass.getuser()
        return user

    ansible_mitogen.transport_config.PlayContextSpec.remote_user = _remote_user

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin,
                         ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)):
        pass
