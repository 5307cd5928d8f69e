"""Bases: the pinned environments (DIRACOS2, a Debian root filesystem) products run on.

`inspect` reads what a base provides, `record` keeps it next to release.toml and checks it,
`check` holds a bundle's requirements against it.
"""
