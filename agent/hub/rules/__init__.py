"""The hub's decisions as plain functions over data: no I/O, table-tested."""
