"""A bridge's MAC learning table (OVS's ``lib/mac-learning.c``) and ``fdb/*``.

Entries map (VLAN, MAC) to the datapath port the MAC was last seen on.
They are kept in least-recently-learned order: (re)learning a MAC moves its
entry to the young end, so the oldest entry is always first.  That single
order serves aging (only the oldest entry can be due), ``fdb/show`` (OVS
lists entries oldest first) and eviction.

Behaviour follows OVS:

* an entry expires once ``idle_time`` seconds have passed since it was last
  learned (``now >= learned_at + idle_time``); ``idle_time`` is clamped to
  15..3600 and ``max_entries`` to 10..1,000,000, as OVS clamps
  ``mac-aging-time`` and ``mac-table-size``;
* a multicast (including broadcast) source MAC is never learned, and a
  multicast destination is never looked up;
* when the table is full, learning a new MAC first evicts *fairly*: the
  least recently learned entry of the port holding the most entries (so one
  port flooding source MACs cannot push everyone else out).  With all
  entries on one port that is simply the oldest entry.  OVS breaks ties
  between equally loaded ports arbitrarily (heap order); we take the tied
  port whose oldest entry is oldest, which keeps results reproducible;
* ``flush`` and ``flush_port`` remove entries without counting them as
  expired; ``expire`` counts ``mac_learning_expired``, eviction counts
  ``mac_learning_evicted``.

Not implemented: static entries (``fdb/add``/``fdb/del``), flood VLANs,
the gratuitous-ARP lock (it only matters for bonds) and ``fdb/stats-*``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ..control.registry import CommandContext, CommandError, CommandRegistry, Reply
from ..observe.coverage import Coverage

#: OVS's MAC_ENTRY_DEFAULT_IDLE_TIME: default ``mac-aging-time``, seconds.
DEFAULT_IDLE_TIME = 300
#: OVS's MAC_DEFAULT_MAX: default ``mac-table-size``.
DEFAULT_MAX_ENTRIES = 8192

MIN_IDLE_TIME, MAX_IDLE_TIME = 15, 3600
MIN_ENTRIES, MAX_ENTRIES = 10, 1_000_000

#: ff:ff:ff:ff:ff:ff as an int.
BROADCAST_MAC = 0xFFFF_FFFF_FFFF
# The I/G bit: the least significant bit of the first octet (bit 40 of the int).
_GROUP_BIT = 1 << 40

#: Table key: (VLAN id, MAC as a 48-bit int).
MacKey = tuple[int, int]


def is_multicast(mac: int) -> bool:
    """Whether ``mac`` is a group address (multicast or broadcast)."""
    return bool(mac & _GROUP_BIT)


def format_mac(mac: int) -> str:
    """``mac`` (48-bit int) as ``xx:xx:xx:xx:xx:xx``."""
    digits = f"{mac:012x}"
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _clamp(value: int, low: int, high: int) -> int:
    return low if value < low else high if value > high else value


@attrs.define(eq=False)
class MacEntry:
    """One learned MAC: on ``port`` in ``vlan`` since clock time ``learned_at``.

    Owned by its :class:`MacLearning`; read it, never modify it.  Entries
    returned by :meth:`MacLearning.expire` are no longer in the table.
    """

    vlan: int
    mac: int
    port: int
    learned_at: float

    @property
    def key(self) -> MacKey:
        return (self.vlan, self.mac)


class MacLearning:
    """One bridge's MAC learning table.

    ``clock`` gives seconds on a monotonic scale (ages and expiry are
    computed from it); ``coverage`` provides the ``mac_learning_*`` counters.

    ``generation`` increases on every change that can alter a forwarding
    decision: a new MAC, a MAC moved to another port, and every removal
    (expiry, eviction, flush).  Re-learning a MAC on the port it is already
    on only refreshes its age and does not change ``generation``.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        coverage: Coverage,
        *,
        idle_time: int = DEFAULT_IDLE_TIME,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._clock = clock
        self._idle_time = _clamp(idle_time, MIN_IDLE_TIME, MAX_IDLE_TIME)
        self._max_entries = _clamp(max_entries, MIN_ENTRIES, MAX_ENTRIES)
        # OrderedDict rather than dict: taking the oldest entry of a table
        # that is constantly refreshed must stay O(1), which a plain dict's
        # iteration over deleted slots does not guarantee.
        self._table: OrderedDict[MacKey, MacEntry] = OrderedDict()
        # The same entries per port, in the same relative order, for fair
        # eviction and flush_port.
        self._by_port: dict[int, OrderedDict[MacKey, MacEntry]] = {}
        self.generation = 0
        #: Keys whose entry appeared, moved or went away since :meth:`take_changes`;
        #: ``None`` means "everything" (a flush).
        self._changed: set[MacKey] | None = set()
        self._learned = coverage.define("mac_learning_learned")
        self._expired = coverage.define("mac_learning_expired")
        self._evicted = coverage.define("mac_learning_evicted")
        self._moved = coverage.define("mac_learning_moved")

    # -- configuration ------------------------------------------------------

    @property
    def idle_time(self) -> int:
        """Seconds an entry lives after it was last learned (``mac-aging-time``)."""
        return self._idle_time

    def set_idle_time(self, seconds: int) -> None:
        """Change the aging time (clamped to 15..3600); ages are kept, so
        entries older than the new time expire at the next :meth:`expire`."""
        self._idle_time = _clamp(seconds, MIN_IDLE_TIME, MAX_IDLE_TIME)

    @property
    def max_entries(self) -> int:
        """Table size limit (``mac-table-size``)."""
        return self._max_entries

    def set_max_entries(self, n: int) -> None:
        """Change the size limit (clamped to 10..1,000,000).  A table now
        over the limit is trimmed, oldest first, by the next :meth:`expire`."""
        self._max_entries = _clamp(n, MIN_ENTRIES, MAX_ENTRIES)

    # -- queries --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, vlan: int, mac: int) -> int | None:
        """The port ``mac`` was learned on in ``vlan``; None if unknown or multicast."""
        if mac & _GROUP_BIT:
            return None
        entry = self._table.get((vlan, mac))
        return None if entry is None else entry.port

    def get(self, vlan: int, mac: int) -> MacEntry | None:
        """The entry for (``vlan``, ``mac``), if any."""
        return self._table.get((vlan, mac))

    def entries(self) -> list[MacEntry]:
        """All entries, least recently learned first (``fdb/show`` order)."""
        return list(self._table.values())

    def age(self, entry: MacEntry) -> int:
        """Whole seconds since ``entry`` was last learned."""
        return int(self._clock() - entry.learned_at)

    def next_expiry(self) -> float | None:
        """Clock time at which :meth:`expire` next has work, None if never.

        A table over its size limit has work now.
        """
        if not self._table:
            return None
        if len(self._table) > self._max_entries:
            return self._clock()
        oldest = next(iter(self._table.values()))
        return oldest.learned_at + self._idle_time

    # -- changes ---------------------------------------------------------------

    def learn(self, vlan: int, mac: int, port: int) -> bool:
        """Record that ``mac`` was seen on ``port`` in ``vlan``.

        Returns True if the entry is new or moved from another port (the
        changes that bump ``generation``), False if it was only refreshed or
        ``mac`` is multicast (never learned).
        """
        if mac & _GROUP_BIT:
            return False
        key = (vlan, mac)
        now = self._clock()
        entry = self._table.get(key)
        if entry is None:
            if len(self._table) >= self._max_entries:
                self._evict_fairly()
            entry = MacEntry(vlan, mac, port, now)
            self._table[key] = entry
            self._port_lru(port)[key] = entry
            self._learned.total += 1
            self.generation += 1
            self._note(key)
            return True
        entry.learned_at = now
        self._table.move_to_end(key)
        if entry.port == port:
            self._by_port[port].move_to_end(key)
            return False
        self._unlink_port(entry)
        entry.port = port
        self._port_lru(port)[key] = entry
        self._moved.total += 1
        self.generation += 1
        self._note(key)
        return True

    def expire(self) -> list[MacEntry]:
        """Remove entries past their aging time, and the oldest entries of a
        table over its size limit; return the removed entries, oldest first.

        Call it periodically (see :meth:`next_expiry`); it is cheap when
        there is nothing to do.
        """
        removed: list[MacEntry] = []
        table = self._table
        if not table:
            return removed
        deadline = self._clock() - self._idle_time
        while table:
            oldest = next(iter(table.values()))
            if len(table) <= self._max_entries and oldest.learned_at > deadline:
                break
            self._remove(oldest)
            self._note(oldest.key)
            removed.append(oldest)
        if removed:
            self._expired.total += len(removed)
            self.generation += 1
        return removed

    def flush(self) -> int:
        """Remove every entry; return how many there were."""
        n = len(self._table)
        if n:
            self._table.clear()
            self._by_port.clear()
            self.generation += 1
            self._changed = None
        return n

    def flush_port(self, port: int) -> int:
        """Remove the entries learned on ``port``; return how many there were."""
        lru = self._by_port.pop(port, None)
        if not lru:
            return 0
        for key in lru:
            del self._table[key]
            self._note(key)
        self.generation += 1
        return len(lru)

    def take_changes(self) -> set[MacKey] | None:
        """The keys changed since the last call (None: all of them), and reset.

        The revalidator uses this to re-decide only the flows whose
        destination entry changed, instead of every flow of the bridge.
        """
        changed, self._changed = self._changed, set()
        return changed

    def _note(self, key: MacKey) -> None:
        if self._changed is not None:
            self._changed.add(key)

    # -- internals --------------------------------------------------------------

    def _port_lru(self, port: int) -> OrderedDict[MacKey, MacEntry]:
        lru = self._by_port.get(port)
        if lru is None:
            lru = self._by_port[port] = OrderedDict()
        return lru

    def _unlink_port(self, entry: MacEntry) -> None:
        lru = self._by_port[entry.port]
        del lru[entry.key]
        if not lru:
            del self._by_port[entry.port]

    def _remove(self, entry: MacEntry) -> None:
        del self._table[entry.key]
        self._unlink_port(entry)

    def _evict_fairly(self) -> None:
        # Ports are few, entries many: scanning ports per eviction is cheap.
        victim: MacEntry | None = None
        most = 0
        for lru in self._by_port.values():
            first = next(iter(lru.values()))
            if len(lru) > most or (
                len(lru) == most and victim is not None and first.learned_at < victim.learned_at
            ):
                most, victim = len(lru), first
        if victim is not None:
            self._remove(victim)
            self._note(victim.key)
            self._evicted.total += 1
            self.generation += 1


# -- unixctl -------------------------------------------------------------------

FDB_HEADER = " port  VLAN  MAC                Age\n"
NO_SUCH_BRIDGE = "no such bridge"
FLUSHED = "table successfully flushed"


def format_fdb_show(ml: MacLearning, port_name: Callable[[int], str]) -> str:
    """The ``fdb/show`` text: OVS's header, then one row per entry, oldest first."""
    rows = [FDB_HEADER]
    for e in ml.entries():
        rows.append(f"{port_name(e.port):>5}  {e.vlan:4d}  {format_mac(e.mac)}  {ml.age(e):3d}\n")
    return "".join(rows)


def fdb_show_data(ml: MacLearning) -> list[dict[str, Any]]:
    """One bridge's ``fdb/show`` entries for JSON clients, oldest first.

    Each is ``{"port": int, "vlan": int, "mac": "xx:..:xx", "age": int}``
    (the keys newer OVS releases use; ``port`` is the datapath port number).
    """
    return [
        {"port": e.port, "vlan": e.vlan, "mac": format_mac(e.mac), "age": ml.age(e)}
        for e in ml.entries()
    ]


def register_fdb_commands(
    registry: CommandRegistry,
    bridges: Callable[[], Mapping[str, MacLearning]],
    port_name: Callable[[int], str],
) -> None:
    """Register ``fdb/show bridge`` and ``fdb/flush [bridge]``.

    ``bridges`` returns the current bridges' tables by bridge name;
    ``port_name`` gives the text of ``fdb/show``'s port column for a
    datapath port number (OVS prints the OpenFlow port number, or
    ``LOCAL`` for the bridge's own port).

    JSON replies: ``fdb/show`` gives ``{bridge: [entry, ...]}`` (see
    :func:`fdb_show_data`) as newer OVS does; ``fdb/flush`` gives
    ``{"flushed": {bridge: n_entries_removed}}`` (OVS's reply is plain).
    """

    def show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        ml = bridges().get(args[0])
        if ml is None:
            raise CommandError(NO_SUCH_BRIDGE)
        return Reply.structured(format_fdb_show(ml, port_name), {args[0]: fdb_show_data(ml)})

    def flush(ctx: CommandContext, args: Sequence[str]) -> Reply:
        tables = bridges()
        if args:
            ml = tables.get(args[0])
            if ml is None:
                raise CommandError(NO_SUCH_BRIDGE)
            selected = {args[0]: ml}
        else:
            selected = dict(tables)
        flushed = {name: ml.flush() for name, ml in selected.items()}
        return Reply.structured(FLUSHED, {"flushed": flushed})

    registry.register("fdb/flush", "[bridge]", 0, 1, flush, mutating=True)
    registry.register("fdb/show", "bridge", 1, 1, show)
