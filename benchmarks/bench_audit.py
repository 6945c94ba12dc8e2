"""Near-duplicate audit on the low-res HAM10000 set: the figures behind the default pHash threshold and
what merging does to the default split.

    python benchmarks/bench_audit.py          # ~3 CPU-min on 2 cores

1. Planted copies: for a seeded sample of images, copies that are re-encoded (JPEG q=50), downscaled
   (to 60 %), flipped, rotated 90° and all of these at once; their distance to the original (recall).
   Pairs listed at the low end were checked by eye (docs/datasets.md).
2. Distinct lesions: for each image, the distance to the nearest image of another lesion id; the number
   of cross-lesion pairs at each threshold (true missed duplicates sit at the low end; a rising count
   marks where distinct lesions start to be paired).
3. At the default threshold: near-duplicate groups across lesion ids, and the pairs that cross the default
   split (seed 42, 70/15/15) before and after `prepare --merge-near-duplicates` (target after: 0).
Writes benchmarks/results/audit_lowres.json.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import REPO, SHARED, machine


def planted(img: Image.Image, kind: str) -> Image.Image:
    T = Image.Transpose

    def jpeg(im):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=50)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    small = lambda im: im.resize((max(1, int(im.width * 0.6)), max(1, int(im.height * 0.6))), Image.BILINEAR)
    return {"jpeg_q50": jpeg, "downscale_60": small, "flip": lambda im: im.transpose(T.FLIP_LEFT_RIGHT),
            "rot90": lambda im: im.transpose(T.ROTATE_90),
            "all": lambda im: jpeg(small(im.transpose(T.ROTATE_90).transpose(T.FLIP_TOP_BOTTOM)))}[kind](img)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "ham10000-lowres"))
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "audit_lowres.json"))
    args = ap.parse_args()
    if not (Path(args.data) / "HAM10000_metadata.csv").is_file():
        print(f"no data at {args.data} (set --data)", file=sys.stderr)
        return 2
    from skinlesion.config import load_config
    from skinlesion.data.audit import (DEFAULT_THRESHOLD, cross_group_pairs, hash_distance, image_hash,
                                       image_hashes, merge_near_duplicates, nearest_distances)
    from skinlesion.data.images import load_rgb
    from skinlesion.data.dataset import load_dataset
    from skinlesion.data.split import make_split

    frame = load_dataset(args.data, progress=False).frame
    t0 = time.perf_counter()
    hashes = image_hashes(frame["path"].tolist())
    hash_s = time.perf_counter() - t0
    rng = np.random.RandomState(0)
    idx = rng.choice(len(frame), args.sample, replace=False)
    kinds = ("jpeg_q50", "downscale_60", "flip", "rot90", "all")
    planted_d = {k: [] for k in kinds}
    for i in idx:
        img = load_rgb(frame.at[i, "path"])
        for k in kinds:
            planted_d[k].append(hash_distance(image_hash(planted(img, k)), hashes[i]))
    nearest = nearest_distances(hashes, frame["lesion_id"].to_numpy())
    thresholds = list(range(0, 65, 4))
    table = []
    widest = cross_group_pairs(frame, hashes, max(thresholds))  # one scan; each threshold filters it
    for t in thresholds:
        pairs = widest[widest["distance"] <= t]
        table.append({"threshold": t, "planted_recall": {k: float(np.mean(np.array(v) <= t)) for k, v in planted_d.items()},
                      "cross_lesion_pairs": int(len(pairs)),
                      "images_with_a_cross_lesion_match": int((nearest <= t).sum()),
                      "pairs_with_same_dx": float((frame["dx"].to_numpy()[pairs["i"]] == frame["dx"].to_numpy()[pairs["j"]]).mean())
                      if len(pairs) else None})
    chosen = DEFAULT_THRESHOLD
    pairs = widest[widest["distance"] <= chosen].reset_index(drop=True)
    cfg = load_config(overrides={"data.root": args.data}).validate()
    split = make_split(frame, cfg.split.seed, cfg.split.ratios)
    where = dict(zip(split["image_id"], split["split"]))
    before = int((pairs["image_a"].map(where) != pairs["image_b"].map(where)).sum())
    merged = merge_near_duplicates(frame, pairs)
    split2 = make_split(merged, cfg.split.seed, cfg.split.ratios)
    where2 = dict(zip(split2["image_id"], split2["split"]))
    after = int((pairs["image_a"].map(where2) != pairs["image_b"].map(where2)).sum())
    known = {"ISIC_0030074", "ISIC_0025226"}
    found_known = bool(((pairs["image_a"].isin(known)) & (pairs["image_b"].isin(known))).any())
    groups = merged.loc[merged["lesion_id"] != merged["original_lesion_id"], "lesion_id"].nunique()
    row = {"images": int(len(frame)), "lesion_ids": int(frame["lesion_id"].nunique()), "hash_seconds": hash_s,
           "sample": args.sample, "planted_distance_max": {k: int(max(v)) for k, v in planted_d.items()},
           "planted_distance_p99": {k: float(np.percentile(v, 99)) for k, v in planted_d.items()},
           "nearest_cross_lesion_distance_quantiles": {q: float(np.percentile(nearest, q)) for q in (0.1, 1, 5, 50)},
           "by_threshold": table, "closest_cross_lesion_pairs": widest.sort_values("distance").head(15)[
               ["image_a", "image_b", "group_a", "group_b", "distance"]].to_dict("records"), "chosen_threshold": chosen, "pairs_at_chosen": int(len(pairs)),
           "lesion_ids_joined": int(frame["lesion_id"].nunique() - merged["lesion_id"].nunique()),
           "merged_groups": int(groups),
           "cross_split_pairs_default_split": {"before": before, "after_merge": after},
           "known_pair_ISIC_0030074_ISIC_0025226_found": found_known,
           "known_pair_distance": hash_distance(hashes[frame.index[frame["image_id"] == "ISIC_0030074"][0]],
                                                hashes[frame.index[frame["image_id"] == "ISIC_0025226"][0]]),
           "machine": machine()}
    Path(args.result).write_text(json.dumps(row, indent=2) + "\n")
    print("threshold  recall(jpeg,down,flip,rot90,all)  cross-lesion pairs  same-dx share")
    for r in table:
        rec = ",".join(f"{r['planted_recall'][k]:.2f}" for k in kinds)
        print(f"{r['threshold']:>9}  {rec:>32}  {r['cross_lesion_pairs']:>18}  {r['pairs_with_same_dx']}")
    print(f"chosen {chosen}: {len(pairs)} pairs, {groups} merged groups; cross-split pairs of the default split "
          f"{before} -> {after} after merging; known pair found: {found_known} (distance {row['known_pair_distance']}); "
          f"hashing {hash_s:.0f} s; wrote {args.result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
