"""The settings every program that reads sources shares (the supernode and
`get`): each config dataclass inherits these fields, as it does TLSOptions, so
each has the same flags and config keys. SourceAccess is what a source opens
with: those settings plus the credentials the program's wiring gathered from
the environment and files (credentials.py), handed over as data."""
from dataclasses import dataclass, field, fields
from typing import List, Optional, Tuple

from dfly.options import option


@dataclass(frozen=True)
class SourceOptions:
    source_ca_file: str = option("", "CA certificates (PEM) an https, ftps or s3 source's "
                                 "certificate must chain to, instead of the system's",
                                 metavar="FILE")
    source_cert: str = option("", "client certificate (PEM) shown to https, ftps and s3 "
                              "sources", metavar="FILE")
    source_key: str = option("", "private key of --source-cert (PEM)", metavar="FILE")
    source_insecure: bool = option(False, "accept any certificate from https, ftps and s3 "
                                   "sources (an explicit opt-in; never the default)")
    source_file_root: List[str] = option([], "directory file:// sources may be read from "
                                         "(none: file:// is refused)", metavar="DIR")
    source_netrc: str = option("", "netrc file with ftp credentials for hosts whose URL "
                               "carries none (default: ~/.netrc when it exists)", metavar="FILE")
    s3_endpoint: str = option("", "S3-compatible endpoint URL for s3:// sources (path-style "
                              "addressing; default: AWS, virtual-hosted)", kind="url", metavar="URL")
    s3_region: str = option("", "region s3:// requests are signed for (default: $AWS_REGION, "
                            "$AWS_DEFAULT_REGION, the profile's in ~/.aws/config, else the "
                            "bucket's own, asked of S3)", metavar="REGION")
    s3_profile: str = option("", "profile in ~/.aws/credentials (default: $AWS_PROFILE, "
                             "else 'default')", metavar="NAME")
    s3_access_key_id: str = option("", "S3 access key id (default: $AWS_ACCESS_KEY_ID, then "
                                   "the shared credentials file)", metavar="ID")
    s3_secret_access_key: str = option("", "S3 secret key (better in the environment or the "
                                       "credentials file than on a command line)",
                                       metavar="SECRET")


@dataclass(frozen=True)
class SourceCredentials:
    """Credentials gathered by the wiring (credentials.py); the sources never look for more."""
    s3: Optional[object] = None   # s3auth.Chain; None: only the s3_* settings' keys
    s3_region: str = ""           # the environment's or the config file's region; "": unknown
    # (host or "default", login, password); never in a repr, so never in a log
    netrc: Tuple[Tuple[str, str, str], ...] = field(default=(), repr=False)
    netrc_error: str = ""         # a netrc file that did not parse: told when ftp needs it
    s3_regions: dict = field(default_factory=dict, compare=False)   # bucket -> region found


@dataclass(frozen=True)
class SourceAccess(SourceOptions):
    """The settings plus the gathered credentials: what open_source is given."""
    credentials: SourceCredentials = field(default_factory=SourceCredentials)


def credentials_of(options: SourceOptions) -> SourceCredentials:
    """The credentials a source was given (none for plain settings)."""
    return getattr(options, "credentials", None) or NO_CREDENTIALS


NO_CREDENTIALS = SourceCredentials()


def source_access(config, credentials: Optional[SourceCredentials] = None) -> SourceAccess:
    """The source fields of any config dataclass with `credentials` (none: only the settings')."""
    return SourceAccess(credentials=credentials or SourceCredentials(),
                        **{f.name: getattr(config, f.name) for f in fields(SourceOptions)
                           if hasattr(config, f.name)})


def source_options_of(config) -> SourceOptions:
    """The source fields of any config dataclass (defaults where it has none)."""
    return SourceOptions(**{f.name: getattr(config, f.name) for f in fields(SourceOptions)
                            if hasattr(config, f.name)})


def check(config) -> None:
    """ValueError (exit 2, naming the flag) for source settings that cannot work."""
    if bool(config.source_cert) != bool(config.source_key):
        raise ValueError("--source-cert and --source-key go together")
    if config.source_insecure and config.source_ca_file:
        raise ValueError("--source-insecure and --source-ca-file contradict each other")
