"""Pure Matrix algorithms: no I/O."""
