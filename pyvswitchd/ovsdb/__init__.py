"""The OVSDB configuration source: ``pyvswitchd --db unix:PATH``.

With ``--db`` (or ``[daemon] db``), the Open_vSwitch database served by a
real ``ovsdb-server`` is the configuration, as it is for ovs-vswitchd:
``ovs-vsctl add-br``, ``add-port`` and ``set`` change the switch, and the
daemon writes back what it knows (port numbers, errors, link state,
statistics) and answers ``next_cfg`` with ``cur_cfg``.

- :mod:`.trio_poller` drives the ``ovs`` package's IDL client from a trio
  task: the IDL says what it waits for, trio waits for it.
- :mod:`.tables` reads the IDL's rows into the configuration document the
  TOML loader validates, setting aside (with the reason) what is refused.
- :mod:`.writeback` turns the datapath's view of each interface into the
  column values ovs-vswitchd writes.
- :mod:`.source` is the task: connect, replicate, apply, answer, write
  back, reconnect.
"""
