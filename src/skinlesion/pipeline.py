"""The chain every "whole experiment" verb shares: train (running prepare when the run has no split) ->
tune-threshold -> evaluate, each step's line echoed. `run` and `demo` call it; `cv` trains its folds and
tunes on their out-of-fold predictions itself, then `evaluate` takes the cv run like any other."""
from __future__ import annotations

from dataclasses import dataclass

from .data.run import Run


@dataclass
class ChainResult:
    train: object  # training.fit.TrainResult
    tune: object  # evaluation.tune's result
    evaluation: object  # evaluation.evaluate.EvalResult


def format_train_result(result) -> str:
    v = result.val_metrics
    return (f"val ROC-AUC {v['roc_auc']:.3f}, PR-AUC {v['pr_auc']:.3f}, sensitivity {v['sensitivity']:.3f} / "
            f"specificity {v['specificity']:.3f} at 0.5 ({result.epochs} epochs, {result.seconds / 60:.1f} min, "
            f"{result.train_images_per_s:.1f} train img/s)\nbundle: {result.bundle}")


def train_tune_evaluate(cfg, run: "Run | str", target_sensitivity: float = 0.90, eval_opts=None,
                        resume: bool = False) -> ChainResult | None:
    """Train, tune the threshold at ``target_sensitivity`` on validation, evaluate on test, in ``run`` (a
    data.run.Run: its console gets each step's line). None on a DDP rank other than 0 (rank 0 tunes and
    evaluates)."""
    from .evaluation.evaluate import evaluate_run, format_headline
    from .evaluation.site_data import EvalOptions
    from .evaluation.tune import format_result, tune_threshold
    from .training.fit import train
    run = Run.of(run)
    opts = eval_opts or EvalOptions(progress=run.console.progress)
    echo = run.console.echo
    result = train(cfg, run, resume=resume)
    if result is None:
        return None
    echo(format_train_result(result))
    echo(f"tune-threshold: highest threshold with validation sensitivity >= {target_sensitivity:.2f}")
    tuned = tune_threshold(run, target_sensitivity)
    echo(format_result(tuned))
    evaluation = evaluate_run(run, opts=opts)
    echo("test headline: " + format_headline(evaluation.metrics))
    echo(f"report: {evaluation.report}")
    return ChainResult(result, tuned, evaluation)
