"""The shared bearer token of a cluster, read once at each daemon's entry point.

One helper for the three daemons (``dodoor loadstore``, ``scheduler``, ``agent``):

* ``--token T`` or ``--token-file PATH`` on the command line (not both);
* else ``$DODOOR_TOKEN`` or ``$DODOOR_TOKEN_FILE`` (not both);
* else no token: the daemon accepts unauthenticated requests.

A token file is what orchestrators hand out (Docker secrets under
``/run/secrets/``, Kubernetes Secret volumes): its content, without the
surrounding whitespace (``echo`` leaves a newline), is the token. A file that
cannot be read or holds nothing is an error, never "no token": a daemon must not
fall back to accepting everyone because its secret was mounted wrong.
"""

from __future__ import annotations

import argparse
import os
from typing import Mapping

from dodoor.errors import ValidationError

TOKEN_ENV = "DODOOR_TOKEN"
TOKEN_FILE_ENV = "DODOOR_TOKEN_FILE"


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    """``--token`` and ``--token-file`` on a daemon's parser."""
    parser.add_argument("--token", default=None, help=f"shared bearer token (default ${TOKEN_ENV})")
    parser.add_argument("--token-file", default=None, metavar="PATH",
                        help=f"read the token from this file, e.g. a Docker or Kubernetes secret "
                             f"(default ${TOKEN_FILE_ENV})")


def read_token_file(path: str, source: str = "--token-file") -> str:
    """The token held in ``path``, stripped; an error naming ``source`` when there is none."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(source, f"cannot read the token file {path!r}: {exc}") from exc
    if not token:
        raise ValidationError(source, f"the token file {path!r} is empty")
    return token


def resolve_token(token: str | None = None, token_file: str | None = None,
                  environ: Mapping[str, str] | None = None) -> str | None:
    """The token a daemon uses: flags first, then the environment, else ``None``."""
    if token and token_file:
        raise ValidationError("--token-file", "give --token or --token-file, not both")
    if token:
        return token
    if token_file:
        return read_token_file(token_file)
    env = os.environ if environ is None else environ
    value, path = env.get(TOKEN_ENV, ""), env.get(TOKEN_FILE_ENV, "")
    if value and path:
        raise ValidationError(f"${TOKEN_FILE_ENV}",
                              f"set ${TOKEN_ENV} or ${TOKEN_FILE_ENV}, not both")
    if path:
        return read_token_file(path, f"${TOKEN_FILE_ENV}")
    return value or None


def auth_headers(token: str | None) -> dict[str, str]:
    """The headers that carry ``token`` on an outgoing request: the one place that builds
    them, for the daemons' own calls, the client and the tools alike (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def token_from_args(args: argparse.Namespace,
                    environ: Mapping[str, str] | None = None) -> str | None:
    """:func:`resolve_token` for a parsed daemon command line."""
    return resolve_token(getattr(args, "token", None), getattr(args, "token_file", None),
                         environ)
