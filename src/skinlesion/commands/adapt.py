"""`skinlesion adapt`: the operating point (and prevalence) at the user's own site."""
from __future__ import annotations

from ..cli_options import _add_data_opts

NAME = "adapt"
HELP = ("re-tune a bundle's operating point on labelled cases from your own site (a new bundle), or estimate the "
        "site's malignant prevalence from unlabelled images")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE", help="the bundle to adapt (left unchanged; a folder or hf-hub:ORG/NAME[@REVISION])")
    _add_data_opts(p)
    p.add_argument("--out", required=True, metavar="NEW_BUNDLE", help="new folder: the adapted bundle (with "
                   "adaptation/ inside: report, local-cases curve); with --unlabelled the report only")
    p.add_argument("--target-sensitivity", type=float, default=None,
                   help="sensitivity to reach at the site (default: the bundle's own target, else 0.9)")
    p.add_argument("--site", metavar="NAME", help="a name for the site, recorded in the bundle (default: the "
                   "data folder's name)")
    p.add_argument("--unlabelled", action="store_true", help="no labels used: estimate the prevalence (EM prior "
                   "adjustment) and the PPV/NPV expected at the current threshold; no bundle is written")
    p.add_argument("--refit-intercept", action="store_true", help="also re-fit the calibration intercept on "
                   "the local sample (slope kept)")
    p.add_argument("--bootstrap", type=int, default=500, metavar="N", help="lesion-bootstrap resamples (default: 500)")
    p.add_argument("--num-workers", type=int, default=None, help="decoding workers")


def main(args, cfg) -> int:
    from ..config import ConfigError
    from ..data.formats import TableSpec
    from ..evaluation.adapt import SiteSpec, adapt, format_adapt
    if cfg.data.root is None:
        raise ConfigError("adapt needs --data LOCAL_DIR (labelled cases from your site, any supported format). "
                          "Remedy: skinlesion adapt --model RUN/bundle --data LOCAL_DIR --out NEW_BUNDLE")
    site = SiteSpec(str(cfg.data.root), TableSpec.from_config(cfg.data), cfg.data.allow_missing, args.site,
                    args.target_sensitivity, args.refit_intercept, args.bootstrap)
    result = adapt(args.model, site, args.out, args.unlabelled, args.num_workers, progress=not args.quiet)
    print(format_adapt(result.report))
    print(f"adapted bundle: {result.bundle} (report in {result.out / 'adaptation'})" if result.bundle else
          f"report: {result.out / 'adapt_unlabelled.json'}")
    return 0
