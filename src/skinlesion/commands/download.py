"""`skinlesion download`: fetch a public dataset into a layout prepare reads."""
from __future__ import annotations

NAME = "download"
HELP = "fetch a public dataset (resumable, checksum-verified) into a layout prepare reads"


def add_arguments(p) -> None:
    from ..data.download import SOURCES
    p.add_argument("name", choices=sorted(SOURCES), help="ham10000 (Harvard Dataverse), isic2018-val, isic2018-test")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to unpack into (re-run to resume)")


def main(args, cfg) -> int:
    from ..data.download import download
    download(args.name, args.out, progress=not args.quiet)
    return 0
