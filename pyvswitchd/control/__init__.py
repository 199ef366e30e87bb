"""unixctl: the daemon's control socket (protocol, registry, server, built-in commands)."""
