"""Bundles on the Hugging Face Hub: `skinlesion push` and ``--model hf-hub:ORG/NAME[@revision]``.

A pushed repo holds

- ``skinlesion/``: the bundle itself (config.json, model.safetensors, ...), what ``hf-hub:`` resolves to —
  downloaded into the Hub cache, then validated and loaded exactly like a local bundle (safetensors only,
  never unpickled);
- ``config.json`` + ``model.safetensors`` at the root in timm's layout, so ``timm.create_model("hf-hub:ORG/NAME")``
  loads the image model (a single image-only model: with its classifier; an ensemble, stack or metadata
  model: the first member's backbone as a feature extractor, as the card says);
- ``README.md``: a model card in the Hub's format (YAML metadata + the run's model_card.md).

The Hub's address comes from huggingface_hub (``HF_ENDPOINT``; tests use a stand-in on 127.0.0.1), the token
from ``--token``, ``HF_TOKEN`` or ``huggingface-cli login``."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from ..models.task import get_task
from .hub_ref import BUNDLE_DIR, HubError, parse_ref  # noqa: F401 - HubError: part of this module's API
from ..data.run import Run
from ..evaluation.scores import MetricsFile


def timm_layout(bundle, out: Path) -> dict:
    """config.json + model.safetensors in timm's layout in ``out``; returns what was saved (for the card)."""
    import timm
    from timm.models import save_for_hf
    cfg = bundle.config
    model = bundle.model
    single = not cfg.get("ensemble") and not cfg.get("stack") and not cfg.get("metadata")
    members = getattr(getattr(model, "base", model), "members", None)
    first = members[0] if members is not None else getattr(model, "base", model)
    timm_id = cfg["backbone"]["timm_id"]
    try:
        n_out = first.head.out_features if single else 0
        image_model = timm.create_model(timm_id, pretrained=False, num_classes=n_out)
    except RuntimeError:  # not a timm architecture (e.g. the test suite's simple_cnn)
        return {"saved": False, "why": f"{timm_id} is not a timm architecture"}
    state = {k: v for k, v in first.backbone.state_dict().items()}
    if single:
        head = image_model.get_classifier()
        prefix = next(n for n, m in image_model.named_modules() if m is head)
        state.update({f"{prefix}.weight": first.head.weight, f"{prefix}.bias": first.head.bias})
    image_model.load_state_dict(state)
    p = bundle.preprocessing
    data_config = {"input_size": [3, p.image_size, p.image_size], "mean": list(p.mean), "std": list(p.std),
                   "crop_pct": p.image_size / p.resize_size, "interpolation": "bilinear"}
    labels = cfg.get("class_names") if single and not get_task(cfg["task"]).binary else None
    save_for_hf(image_model, str(out), model_config={"label_names": labels} if labels else None,
                safe_serialization=True, data_config=data_config)
    what = (f"the whole image model: logits ({get_task(cfg['task']).probability_formula})") if single else \
        "the first member's backbone only (num_classes=0: a feature extractor); the full model is skinlesion's"
    return {"saved": True, "timm_id": timm_id, "what": what}


def _eval_results(evaluation: dict | None, name: str) -> list:
    """The test metrics of the run's evaluation (metrics.json) as the Hub's model-index results; the CIs go
    into the card text (the Hub's schema has no field for them)."""
    from huggingface_hub import EvalResult
    if not evaluation:
        return []
    at = evaluation.get("at_threshold") or {}
    split = evaluation.get("split", "test")
    return [EvalResult(task_type="image-classification", dataset_type="HAM10000", dataset_name=name,
                       dataset_split=split, metric_type=k, metric_value=round(float(at[k]["value"]), 4),
                       metric_name=f"{k} (95% CI {at[k]['ci_low']:.3f}-{at[k]['ci_high']:.3f}, lesion bootstrap)")
            for k in ("roc_auc", "pr_auc", "sensitivity", "specificity") if isinstance(at.get(k), dict)]


def hub_card(config: dict, body: str, timm_note: dict, licence: str, evaluation: dict | None = None,
             repo: str = "ORG/NAME") -> str:
    """README.md in the Hub's format: YAML metadata (licence, tags, datasets, metrics and, when the run was
    evaluated, its test results) and the card text."""
    from huggingface_hub import ModelCard, ModelCardData
    metrics = config.get("metrics") or {}
    val = metrics.get("val") or metrics.get("oof") or {}
    results = _eval_results(evaluation, "HAM10000 (held-out lesion-level test split)")
    data = ModelCardData(license=licence, library_name="timm" if timm_note.get("saved") else None,
                         tags=["skinlesion", "dermoscopy", "skin-lesion", "image-classification", "medical",
                               "research-only"],
                         datasets=["HAM10000"], pipeline_tag="image-classification",
                         metrics=sorted(k for k in ("roc_auc", "pr_auc") if k in val) or None,
                         model_name=f"skinlesion-{config.get('architecture', 'model')}" if results else None,
                         eval_results=results or None)
    header = ("# skinlesion model (research use only; not a medical device)\n\n"
              f"Load it with skinlesion: `skinlesion predict --model hf-hub:{repo} IMAGES` (the bundle is under "
              f"`{BUNDLE_DIR}/`; safetensors and JSON only).\n\n"
              + (f"timm: `timm.create_model(\"hf-hub:{repo}\", pretrained=True)` loads {timm_note['what']}.\n\n"
                 if timm_note.get("saved") else f"No timm copy: {timm_note.get('why')}.\n\n"))
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{header}{body}"))


def _card_body(bundle_dir: Path, config: dict) -> str:
    card = bundle_dir.parent / "model_card.md"
    if card.is_file():
        return card.read_text(encoding="utf-8")
    return ("## Model card\n\nThis bundle was pushed without an evaluation report (run `skinlesion evaluate RUN_DIR` "
            "to write model_card.md with test metrics and CIs). Validation metrics from the bundle:\n\n```json\n"
            + json.dumps(config.get("metrics") or {}, indent=2)[:4000] + "\n```\n")


def push(model: str | Path, repo: str, revision: str | None = None, private: bool = False, licence: str = "cc-by-nc-4.0",
         token: str | None = None) -> str:
    """Validate the bundle, stage it with the timm copy and the card, upload it as one commit; the commit URL."""
    from .bundle import load_bundle
    repo, _ = parse_ref(repo)
    model = Path(model)
    bundle = load_bundle(model)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        shutil.copytree(model, stage / BUNDLE_DIR, ignore=shutil.ignore_patterns("*.tmp", ".*"))
        with torch.no_grad():
            note = timm_layout(bundle, stage)
        metrics = Run(model.parent).metrics_json()  # a run's bundle: the run's test metrics
        evaluation = MetricsFile.read(metrics) if metrics.is_file() else None
        (stage / "README.md").write_text(hub_card(bundle.config, _card_body(model, bundle.config), note, licence,
                                                  evaluation, repo), encoding="utf-8")
        api = HfApi(token=token)
        try:
            api.create_repo(repo, private=private, exist_ok=True)
            if revision:
                api.create_branch(repo, branch=revision, exist_ok=True)
            info = api.upload_folder(repo_id=repo, folder_path=stage, revision=revision,
                                     commit_message=f"skinlesion push: {bundle.config.get('architecture')} bundle")
        except HfHubHTTPError as exc:
            raise HubError(f"push to {repo}: the Hub refused it ({str(exc).splitlines()[0][:200]}). Remedy: log in "
                           "with a write token (HF_TOKEN or `huggingface-cli login`) and check ORG/NAME.") from None
        except OSError as exc:
            raise HubError(f"push to {repo}: the Hub could not be reached ({str(exc).splitlines()[0][:200]}). "
                           "Remedy: check the network and HF_ENDPOINT, then try again.") from None
    return str(getattr(info, "commit_url", info))
