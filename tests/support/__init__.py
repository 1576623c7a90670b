"""Everything the tests (and the benchmarks) share, in one place: paths of the repository's test data, the
`provd` command as a user runs it, the daemon under a fake service manager, in-memory settings, generated
contact lists, polling with a deadline, and the real peers (peers/: servers and network namespaces)."""
