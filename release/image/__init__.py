"""Per-VO container images for DIRAC's SingularityComputingElement, x86_64 and aarch64.

`oci` writes (and reads) OCI image layouts, `layers` applies a layer to a folder safely,
`build` makes one VO's image per architecture and unpacks it to the plain tree SingularityCE
runs, `check` runs that tree, `publishable` lays it out as CVMFS serves it.
"""
