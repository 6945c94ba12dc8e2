"""`skinlesion push`: a bundle to the Hugging Face Hub (bundle, timm copy, model card)."""
from __future__ import annotations

NAME = "push"
HELP = ("upload a bundle to the Hugging Face Hub: the bundle under skinlesion/, a timm copy of the image model, and "
        "a model card; load it anywhere with --model hf-hub:ORG/NAME")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE", help="the bundle folder to upload")
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="the Hub model repo (created if needed)")
    p.add_argument("--revision", metavar="BRANCH", help="push to this branch (created if needed; default: main)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--license", default="cc-by-nc-4.0", help="the card's licence id (default: cc-by-nc-4.0, as "
                   "HAM10000's CC BY-NC 4.0 licence asks of models trained on it)")
    p.add_argument("--token", help="a Hub write token (default: HF_TOKEN or the `huggingface-cli login` one)")


def main(args, cfg) -> int:
    from ..inference.hub import push
    url = push(args.model, args.repo, args.revision, args.private, args.license, args.token)
    print(f"pushed {args.model} to {args.repo}: {url}")
    print(f"load it with: skinlesion predict --model hf-hub:{args.repo}{'@' + args.revision if args.revision else ''} "
          "IMAGES")
    return 0
