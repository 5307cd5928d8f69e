"""CVMFS publishing that can be trusted: one transaction per release, verified, idempotent.

A `Layout` says where things go, a backend (a plain directory stratum or `cvmfs_server`)
provides transactions, and `publisher.publish` runs the protocol. It stands alone: it imports
nothing from the toolkit (`release`), which a test enforces. It owns its errors
(`cvmfs.errors`, re-exported by `release.errors`), the bundle contract (`cvmfs.bundle_contract`:
manifest and SHA256SUMS reading, checking and the digest, which the build imports) and the ELF
reader (`cvmfs.elf`); the caller hands it plain values instead of configuration (a
`ServerNode`, retention's version ordering), and the toolkit's `release.targets` makes them.
"""
