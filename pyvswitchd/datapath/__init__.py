"""The userspace datapath: ports, PMD tasks, scheduling, statistics, the flow pipeline."""
