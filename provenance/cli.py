"""`swapstream keys init DIR` and `swapstream verify FILE`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from provenance.errors import ProvenanceError
from provenance.keys import make_test_credentials, write_test_credentials
from provenance.signer import path_from_environment
from provenance.verify import TRUST_ENVIRONMENT_VARIABLE, format_verification, verify_file

logger = logging.getLogger(__name__)

DEFAULT_SIGNER_NAME = "swapstream signer"


@dataclass(frozen=True)
class KeysInitConfig:
    """`swapstream keys init`: where to write, whose name the certificate carries, how long it lasts."""

    directory: Path
    signer_name: str = DEFAULT_SIGNER_NAME
    days: int = 365
    force: bool = False

    def __post_init__(self) -> None:
        if not self.signer_name.strip():
            raise ProvenanceError("--name must not be empty")
        if self.days < 1:
            raise ProvenanceError(f"--days must be >= 1, got {self.days}")
        if self.directory.exists() and not self.directory.is_dir():
            raise ProvenanceError(f"DIR {self.directory} is a file, not a folder")


@dataclass(frozen=True)
class VerifyConfig:
    """`swapstream verify`: the file, the trust anchors (if any) and the output format."""

    file: Path
    trust: Path | None = None
    as_json: bool = False


def keys_main(argv: list[str]) -> int:
    """`swapstream keys init DIR`: write a test CA and signer, print the environment lines that use them."""
    parser = argparse.ArgumentParser(prog="swapstream keys", description="Make C2PA signing keys for recordings.")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser(
        "init", help="make a local test CA and a signing certificate + key it issued",
        description="Make a local test CA and a C2PA signing certificate + key it issued (EC P-256, ES256) in DIR, "
                    "and print the NAME=VALUE environment lines that make `swapstream client` sign with them and "
                    "`swapstream verify` trust them. Not on any public trust list: for testing and private use.")
    init.add_argument("directory", type=Path, metavar="DIR", help="folder for ca.pem, chain.pem and signer.key")
    init.add_argument("--name", default=DEFAULT_SIGNER_NAME, dest="signer_name",
                      help=f"the signer's name in the certificate (default {DEFAULT_SIGNER_NAME!r})")
    init.add_argument("--days", type=int, default=365, help="how long the certificate is valid (default 365)")
    init.add_argument("--force", action="store_true", help="replace keys already in DIR")
    args = parser.parse_args(argv)
    config = KeysInitConfig(args.directory, args.signer_name, args.days, args.force)
    files = write_test_credentials(config.directory, make_test_credentials(config.signer_name, config.days),
                                   force=config.force)
    logger.info("wrote %s, %s and %s (key mode 0600); the CA's own key was discarded. Export the lines below to "
                "sign recordings and verify them (e.g. save them as swapstream.env, then `set -a; . ./swapstream.env; "
                "set +a`)", files.ca, files.chain, files.key)
    for name, value in files.environment().items():
        print(f"{name}={shlex.quote(value)}")
    return 0


def verify_main(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    """`swapstream verify FILE`: 0 when the file carries a valid C2PA manifest (trusted, with --trust), else 1."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="swapstream verify",
        description="Check a file's C2PA Content Credentials: the signature, the content hashes, who signed it, "
                    "whether it is marked AI-generated and by which model. Exit status 0 only when valid.")
    parser.add_argument("file", type=Path, metavar="FILE", help="the file to check (MP4, MOV, JPEG, PNG, ...)")
    parser.add_argument("--trust", type=Path, default=path_from_environment(environ, TRUST_ENVIRONMENT_VARIABLE),
                        help="PEM file of CA certificates the signer's chain must lead to "
                             f"(default: ${TRUST_ENVIRONMENT_VARIABLE}, else trust is not checked)")
    parser.add_argument("--json", action="store_true", dest="as_json", help="print the result as JSON")
    args = parser.parse_args(argv)
    config = VerifyConfig(args.file, args.trust, args.as_json)
    result = verify_file(config.file, config.trust)
    print(json.dumps(result.to_json(), indent=2) if config.as_json else format_verification(result))
    return 0 if result.valid else 1
