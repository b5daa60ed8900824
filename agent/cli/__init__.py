"""The `tentacle` command line. The only layer that reads the environment,
configures logging or exits the process."""
