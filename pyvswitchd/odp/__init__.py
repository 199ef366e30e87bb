"""The vocabulary every layer speaks: packets, flow keys, flow and action text.

The lowest layer of the package (OVS's ``dp-packet``, ``packets``, ``flow``
and ``odp-util``): pure data and pure functions, no trio, no I/O, and
nothing from the layers above it.  Netdevs, offload providers and the
datapath all import it; it imports none of them.
"""
