"""One module per verb. Each has NAME and HELP, ``add_arguments(parser)``, ``main(args, cfg) -> exit status``
and, when it writes into a run directory, LOCK: the argument naming it ("out": the verb may create the run;
"run_dir": it writes into an existing one). ``skinlesion.cli`` only discovers them (in this order) and
dispatches."""

VERBS = ("prepare", "explore", "make_demo_data", "train", "lr_find", "cv", "tune_threshold", "evaluate", "audit",
         "download", "adapt", "compare", "runs", "run", "search", "predict", "explain", "export", "push", "serve", "demo")
