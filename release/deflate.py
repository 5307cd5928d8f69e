"""The deflate engine behind every gzip stream the toolkit writes (release tarballs, image layers).

Compression is the largest single cost of a build: GNU gzip and zlib at level 3 run at about
60 MB/s on one core, so two ~300 MB trees take ~5 s of both cores of a release runner.
ISA-L's deflate (the `isal` package, Intel's Intelligent Storage Acceleration Library) writes
the same gzip format at 300-500 MB/s with a size within a few percent of zlib's at the same
level, and any gzip reader (tar, Python, SingularityCE, umoci) reads it. It is the default;
`build.deflate = "zlib"` keeps Python's zlib (up to level 9, a few percent smaller).

ISA-L's levels are 0 to 3: a configured level above 3 is used as 3. The engine's name and
version are part of every cache key that holds compressed bytes (`key`): another engine, or
another version of one, may compress the same bytes differently, and a reproducible build
must never mix them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any, BinaryIO, Literal

Engine = Literal["isal", "zlib"]
ISAL_MAX_LEVEL = 3


@dataclass(frozen=True)
class Deflate:
    """An engine and the level it compresses at."""

    engine: Engine = "isal"
    level: int = 3

    @cached_property
    def module(self) -> ModuleType:
        """The zlib-compatible module (`compressobj`, `crc32`) of the engine."""
        if self.engine == "isal":
            from isal import isal_zlib

            return isal_zlib
        return zlib

    @property
    def effective_level(self) -> int:
        """The level the engine runs at (ISA-L's highest is 3)."""
        return min(self.level, ISAL_MAX_LEVEL) if self.engine == "isal" else self.level

    @property
    def version(self) -> str:
        if self.engine == "isal":
            import isal

            return f"isal-{isal.__version__}"
        return f"zlib-{zlib.ZLIB_RUNTIME_VERSION}"

    @property
    def key(self) -> str:
        """What names its output in a cache: engine, version and the level it runs at."""
        return f"{self.version}-{self.effective_level}"

    def raw(self) -> Any:
        """A compressor of raw deflate data (no header), for gzip members written by hand."""
        return self.module.compressobj(self.effective_level, zlib.DEFLATED, -zlib.MAX_WBITS)

    def crc32(self, data: bytes, value: int = 0) -> int:
        return int(self.module.crc32(data, value))

    def gzip_writer(self, fileobj: Any) -> BinaryIO:
        """A gzip stream onto `fileobj` with no file name and header time 0 (reproducible)."""
        if self.engine == "isal":
            from isal import igzip

            return igzip.GzipFile(filename="", mode="wb", fileobj=fileobj,  # type: ignore[no-untyped-call,return-value]
                                  compresslevel=self.effective_level, mtime=0)  # fmt: skip
        import gzip

        return gzip.GzipFile(filename="", mode="wb", fileobj=fileobj,  # type: ignore[return-value]
                             compresslevel=self.level, mtime=0)  # fmt: skip
