"""`skinlesion serve`: the web page and REST API for one bundle."""
from __future__ import annotations

NAME = "serve"
HELP = "web page + REST API for one bundle (FastAPI, localhost by default)"


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a model bundle folder, or hf-hub:ORG/NAME[@REVISION]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--max-upload-mb", type=float, default=10, help="upload size limit in MB (default: 10)")


def main(args, cfg) -> int:
    from ..serving.app import serve
    print(f"serving {args.model} on http://{args.host}:{args.port}/ (API docs at /docs); research use only")
    serve(args.model, args.host, args.port, args.max_upload_mb)
    return 0
