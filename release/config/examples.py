"""Right values shown next to a configuration error, so the fix can be copied."""

from __future__ import annotations

#: Right values shown next to an error, keyed by the last element of the key path.
EXAMPLES: dict[str, str] = {
    "git": 'source = { git = "https://github.com/DIRACGrid/DIRAC.git" }',
    "index": 'source = { index = "diracx" }',
    "source": 'source = { git = "../MyVODIRAC" }  or  source = { index = "diracx" }',
    "subdirectory": 'subdirectory = "src/python"',
    "distribution": 'distribution = "DIRAC"',
    "python": 'python = "3.11"',
    "requirements": 'requirements = ["diracx-client==0.7.0", "gfal2-python>=1.12"]',
    "exclude_newer": 'exclude_newer = "commit"  or  exclude_newer = 2026-10-01T00:00:00Z',
    "glibc": 'glibc = "2.28"',
    "platforms": '[platforms.x86_64]\nglibc = "2.28"\n\n[platforms.aarch64]\nglibc = "2.28"',
    "products": '[products.DIRAC]\nsource = { git = "https://github.com/DIRACGrid/DIRAC.git" }',
    "out": 'out = "dist"',
    "cache_dir": 'cache_dir = "~/.cache/dirac-release"',
    "compression_level": "compression_level = 3",
    "jobs": "jobs = 2",
    "dir": '[state]\ndir = "state"',
    "repositories": '[repositories."dirac.egi.eu"]\nbackend = "directory"\npath = "stratum"\nprefix = "dirac"',
    "backend": 'backend = "directory"  or  backend = "server"',
    "prefix": 'prefix = "dirac"',
    "links": 'links = ["latest"]',
    "keep": "keep = 5",
    "tag_format": 'tag_format = "{product}-{tag}"',
    "wait": "wait = 120",
    "path": 'path = "stratum"',
    "environments": '[environments.certification]\nhosts = { cctbdirac01 = "cctbdirac01.in2p3.fr", cctbdirac02 = "cctbdirac02.in2p3.fr" }',
    "hosts": 'hosts = { cctbdirac01 = "cctbdirac01.in2p3.fr" }',
    "services": '[products.vodemo.services.diracx]\ncommand = "bin/vodemo-diracx --port 8000"\nhealth = "http://127.0.0.1:8000/api/health/live"',
    "command": 'command = "bin/vodemo-diracx --port 8000"',
    "batch": "batch = 1",
    "max_fail_percentage": "max_fail_percentage = 0",
    "repository": 'repository = "dirac.egi.eu"',
    "smoke_imports": 'smoke_imports = ["DIRAC", "M2Crypto"]',
}
