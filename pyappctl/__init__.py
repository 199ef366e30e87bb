"""pyappctl: a drop-in for ovs-appctl, speaking unixctl to pyvswitchd (or any OVS daemon).

* :mod:`pyappctl.cli` is the ``pyappctl`` command (``python -m pyappctl``):
  ovs-appctl's options, messages and exit statuses (0 ok, 1 local error,
  2 server error, 142 timeout).
* :mod:`pyappctl.client` is the blocking library underneath it:
  :func:`~pyappctl.client.resolve_target` maps ``-t`` values to socket paths
  through locked pidfiles, and :class:`~pyappctl.client.UnixctlClient` runs
  transactions on one connection.
"""
