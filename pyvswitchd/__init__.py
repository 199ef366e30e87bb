"""pyvswitchd: Open vSwitch's userspace datapath and PMD machinery on trio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pyvswitch")
except PackageNotFoundError:  # running from a checkout without installation
    __version__ = "0.0.0"

PROGRAM_NAME = "pyvswitchd"
PACKAGE_NAME = "pyvswitch"
