"""dfly: peer-to-peer file distribution in one zero-dependency zipapp.

    from dfly import Client
    with Client(supernodes=["sn.example:8002"]) as client:
        result = client.download("http://origin/file.iso", "file.iso")
        print(result.bytes_from_peers)
"""
__version__ = "0.1.0"

from dfly.errors import DflyError, DigestMismatch, DownloadTimeout, LocalIOError, P2PUnavailable, SourceError  # noqa: E402

__all__ = ["Client", "DownloadResult", "DflyError", "DigestMismatch", "DownloadTimeout",
           "LocalIOError", "P2PUnavailable", "SourceError", "__version__"]


def __getattr__(name: str):
    # Client and DownloadResult are imported on first use (PEP 562): the client pulls in
    # the downloader, uploader and HTTP server, which `dfly supernode` or `--version` never use.
    if name in ("Client", "DownloadResult"):
        from dfly import client
        return getattr(client, name)
    raise AttributeError("module 'dfly' has no attribute %r" % name)
