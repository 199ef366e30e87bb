"""Network devices: the provider API, the type registry and the built-in types."""
