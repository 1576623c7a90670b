"""Pure logic: no I/O, no clock reads, no sockets, no files. The adapters feed it."""
