"""DuckDB on a lake in an object store, without internet egress.

DuckDB reads s3:// through its `httpfs` extension, which it downloads on first use: a city
network without egress then fails every query, `cityflow verify` included, although the workers
land to the same bucket fine (they use pyarrow). So cityflow never lets DuckDB download anything
(`autoinstall_known_extensions = false`) and reads a remote lake one of two ways:

1. through an fsspec filesystem registered with the connection (`s3fs` for s3://, `gcsfs` for
   gs://, `adlfs` for az:// and abfs://), built from the same URI options the workers use
   (`?endpoint_override=http://minio:9000&scheme=http&region=...`) and the cloud's standard
   credentials. Pure Python I/O, installed with `pip install 'cityflow[s3]'` (in the image);
2. through DuckDB's own extension when it is already installed on the machine (someone ran
   `INSTALL httpfs` where there is egress, or copied `~/.duckdb/extensions`); faster for large
   scans.

`CITYFLOW_WAREHOUSE_REMOTE_IO` picks: `auto` (1 if its library is installed, else 2), `fsspec`,
`extension`. Neither available: one error saying what to install.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb

from contracts.lake import LAKE_SCHEMES, lake_scheme

_EXTENSIONS = {scheme: ext for scheme, ext in LAKE_SCHEMES.items() if ext is not None}
_FSSPEC_MODULE = {"s3": "s3fs", "s3a": "s3fs", "s3n": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
                  "abfs": "adlfs", "abfss": "adlfs"}
REMOTE_IO = ("auto", "fsspec", "extension")


class RemoteLakeError(RuntimeError):
    """The warehouse cannot read this remote lake here; the message says what to install."""


def scheme_of(lake_root: str) -> str | None:
    return lake_scheme(lake_root) if "://" in lake_root else None


def duckdb_root(lake_root: str) -> str:
    """The lake root as DuckDB globs it: local paths absolute, URIs without their query
    options (those configure the filesystem, they are not part of object keys)."""
    if "://" not in lake_root:
        return os.path.abspath(lake_root)
    parts = urlsplit(lake_root)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def _fsspec_filesystem(lake_root: str) -> Any:  # an fsspec AbstractFileSystem, or None
    scheme = scheme_of(lake_root) or ""
    module = _FSSPEC_MODULE.get(scheme)
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return None
    options = {k: v[-1] for k, v in parse_qs(urlsplit(lake_root).query).items()}
    if module == "s3fs":
        import s3fs

        client: dict[str, str] = {}
        if "endpoint_override" in options:
            endpoint = options["endpoint_override"]
            if "://" not in endpoint:
                endpoint = f"{options.get('scheme', 'https')}://{endpoint}"
            client["endpoint_url"] = endpoint
        if "region" in options:
            client["region_name"] = options["region"]
        # no listing cache, no shared instance: workers add and compaction removes files all the time
        return s3fs.S3FileSystem(client_kwargs=client, use_listings_cache=False, skip_instance_cache=True)
    if module == "gcsfs":
        import gcsfs

        return gcsfs.GCSFileSystem()
    import adlfs

    return adlfs.AzureBlobFileSystem(account_name=options.get("account_name") or os.environ.get("AZURE_STORAGE_ACCOUNT"))


def _extension_installed(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = ?", [name]).fetchall()
    return bool(rows and rows[0][0])


def prepare_remote(con: duckdb.DuckDBPyConnection, lake_root: str, mode: str = "auto") -> str | None:
    """Make `con` able to read the lake without downloading anything; return how ('fsspec:s3fs',
    'extension:httpfs') or None for a local lake. RemoteLakeError if it cannot."""
    con.execute("SET autoinstall_known_extensions = false")
    scheme = scheme_of(lake_root)
    if scheme is None:
        return None
    if mode not in REMOTE_IO:
        raise RemoteLakeError(f"CITYFLOW_WAREHOUSE_REMOTE_IO must be one of {', '.join(REMOTE_IO)}, got {mode!r}")
    ext = _EXTENSIONS.get(scheme)
    if ext is None:
        raise RemoteLakeError(f"CITYFLOW_LAKE: DuckDB cannot read {scheme}:// URIs; use a local path or one of "
                              f"{', '.join(sorted(_EXTENSIONS))}")
    if mode in ("auto", "fsspec"):
        fs = _fsspec_filesystem(lake_root)
        if fs is not None:
            con.execute("SET autoload_known_extensions = false")  # so s3:// goes to the registered filesystem
            con.register_filesystem(fs)
            return f"fsspec:{_FSSPEC_MODULE[scheme]}"
        if mode == "fsspec":
            raise RemoteLakeError(f"CITYFLOW_WAREHOUSE_REMOTE_IO=fsspec needs the Python package "
                                  f"{_FSSPEC_MODULE.get(scheme, '(none for ' + scheme + ')')}: "
                                  "pip install 'cityflow[s3]'")
    if _extension_installed(con, ext):
        con.execute(f"LOAD {ext}")
        return f"extension:{ext}"
    wanted = _FSSPEC_MODULE.get(scheme)
    raise RemoteLakeError(
        f"DuckDB cannot read {scheme}:// here without downloading its '{ext}' extension, which cityflow does not "
        f"allow (no internet egress assumed). Either install {wanted or 'an fsspec filesystem'} "
        f"(pip install 'cityflow[s3]') or pre-install the extension where there is egress "
        f"(python -c \"import duckdb; duckdb.sql('INSTALL {ext}')\") and copy ~/.duckdb/extensions here.")


__all__ = ["REMOTE_IO", "RemoteLakeError", "duckdb_root", "prepare_remote", "scheme_of"]
