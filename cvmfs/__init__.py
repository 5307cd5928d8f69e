"""CVMFS publishing that can be trusted: one transaction per release, verified, idempotent.

Usable on its own: a `Layout` says where things go, a backend (a plain directory stratum or
`cvmfs_server`) provides transactions, and `publisher.publish` runs the protocol.
"""
