"""CVMFS publishing that can be trusted: one transaction per release, verified, idempotent.

A `Layout` says where things go, a backend (a plain directory stratum or `cvmfs_server`)
provides transactions, and `publisher.publish` runs the protocol. Its errors are its own
(`cvmfs.errors`, which `release.errors` re-exports). Not yet on its own: it still reads
manifests and ELF headers with `release.build.manifest` and `release.build.elf`, retention
parses tags with `release.version`, and the factory takes a `release.config` (issue #10).
"""
