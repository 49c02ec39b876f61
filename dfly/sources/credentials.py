"""Source credentials from the environment and the usual files, gathered once by a
program's wiring (cli.py, and the Client a library user builds) and handed to the
sources as data (config.SourceCredentials): the sources themselves read neither.

S3, in the SDKs' order: the --s3-access-key-id/--s3-secret-access-key settings;
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN); the shared
credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile
--s3-profile, else AWS_PROFILE, else "default"); the container endpoint
(AWS_CONTAINER_CREDENTIALS_FULL_URI, or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI at
169.254.170.2, with AWS_CONTAINER_AUTHORIZATION_TOKEN or the file named by
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE); the instance metadata service
(AWS_EC2_METADATA_SERVICE_ENDPOINT, default http://169.254.169.254; off with
AWS_EC2_METADATA_DISABLED=true). The two endpoints are asked only when an s3://
source is opened and nothing earlier had keys (s3auth.py). The region: AWS_REGION,
AWS_DEFAULT_REGION, the profile's `region` in AWS_CONFIG_FILE or ~/.aws/config.

FTP: the netrc file (--source-netrc, else ~/.netrc when it exists), parsed here.

A file that cannot be read is not an error at start (most runs never open an s3
or ftp source): the error is told when a source needs those credentials.
"""
import configparser
import netrc
import os
from typing import Mapping, Optional, Tuple
from urllib.parse import urlsplit

from dfly.sources import s3auth
from dfly.sources.config import SourceCredentials, SourceOptions

INSTANCE_ENDPOINT = "http://169.254.169.254"
CONTAINER_HOST = "http://169.254.170.2"
# The container endpoint may be plain http only on these hosts (as botocore allows).
CONTAINER_HTTP_HOSTS = ("127.0.0.1", "::1", "localhost", "169.254.170.2", "169.254.170.23",
                        "fd00:ec2::23")


def gather(options: SourceOptions, environ: Mapping[str, str]) -> SourceCredentials:
    """Everything `options`' sources may need, from `environ` and the files it names."""
    home = environ.get("HOME") or os.path.expanduser("~")
    rc, rc_error = _netrc(options.source_netrc or os.path.join(home, ".netrc"))
    return SourceCredentials(s3=s3_chain(options, environ, home),
                             s3_region=s3_region(options, environ, home),
                             netrc=rc, netrc_error=rc_error)


def s3_chain(options: SourceOptions, environ: Mapping[str, str], home: str) -> s3auth.Chain:
    providers = []
    if options.s3_access_key_id and options.s3_secret_access_key:
        providers.append(s3auth.Static(s3auth.Credentials(options.s3_access_key_id,
                                                          options.s3_secret_access_key)))
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        providers.append(s3auth.Static(s3auth.Credentials(
            environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"],
            environ.get("AWS_SESSION_TOKEN", ""))))
    providers.append(_shared_file(options, environ, home))
    container = _container(environ)
    if container is not None:
        providers.append(container)
    if environ.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() != "true":
        endpoint = environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or INSTANCE_ENDPOINT
        providers.append(s3auth.Refreshing(s3auth.imds_fetcher(endpoint.rstrip("/")),
                                           "instance metadata service at %s" % endpoint[:100],
                                           optional=True))
    return s3auth.Chain(providers)


def s3_region(options: SourceOptions, environ: Mapping[str, str], home: str) -> str:
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        return region.strip()
    path = environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    profile = _profile(options, environ)
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return ""   # the region is then asked of S3
    section = profile if profile == "default" else "profile " + profile
    return parser.get(section, "region", fallback="").strip()


def _profile(options: SourceOptions, environ: Mapping[str, str]) -> str:
    return options.s3_profile or environ.get("AWS_PROFILE") or "default"


def _shared_file(options: SourceOptions, environ: Mapping[str, str], home: str) -> s3auth.Static:
    path = environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials")
    profile = _profile(options, environ)
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError) as e:
        return s3auth.Static(None, "cannot read the AWS credentials file %s: %s"
                             % (path, type(e).__name__))
    if parser.has_option(profile, "aws_access_key_id") and \
            parser.has_option(profile, "aws_secret_access_key"):
        return s3auth.Static(s3auth.Credentials(
            parser.get(profile, "aws_access_key_id").strip(),
            parser.get(profile, "aws_secret_access_key").strip(),
            parser.get(profile, "aws_session_token", fallback="").strip()))
    return s3auth.Static(None)


def _container(environ: Mapping[str, str]) -> Optional[object]:
    """The container endpoint's provider when the environment names one."""
    relative = environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
    full = environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
    if relative:
        url = CONTAINER_HOST + "/" + relative.lstrip("/")
    elif full:
        url = full
    else:
        return None
    parts = urlsplit(url)
    if not (parts.scheme == "https" or (parts.scheme == "http"
                                        and (parts.hostname or "") in CONTAINER_HTTP_HOSTS)):
        return s3auth.Static(None, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http "
                             "to a loopback or container-endpoint address: %s" % url[:100])
    token = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")
    token_file = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "")
    if token_file:
        try:
            with open(token_file) as f:
                token = f.read().strip()
        except OSError as e:
            return s3auth.Static(None, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s: %s"
                                 % (token_file, e.strerror or e))
    return s3auth.Refreshing(s3auth.container_fetcher(url, token),
                             "container credentials endpoint %s" % url[:100])


def _netrc(path: str) -> Tuple[Tuple[Tuple[str, str, str], ...], str]:
    """((host, login, password), ...) from the netrc file ("default" for its default
    entry), and the error reading it."""
    if not os.path.exists(path):
        return (), ""
    try:
        parsed = netrc.netrc(path)
    except (netrc.NetrcParseError, OSError) as e:
        return (), "cannot read the netrc file %s: %s" % (path, getattr(e, "msg", None) or
                                                          getattr(e, "strerror", None) or e)
    return tuple((host, login or "", password or "")
                 for host, (login, _account, password) in parsed.hosts.items()), ""
