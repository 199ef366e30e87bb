"""Hardware flow offload: the dpif-offload provider framework and its providers."""
