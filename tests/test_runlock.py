"""One writer per run directory: while one command holds a run, a second one that would write into it
stops at once with a message and exit status 2, writing nothing; the lock dies with its process."""
from __future__ import annotations

import subprocess
import sys

from skinlesion.cli import main
from skinlesion.runlock import LOCK_NAME
from conftest import snapshot

HOLD = ("import sys, time\nfrom skinlesion.runlock import run_lock\nwith run_lock(sys.argv[1], 'train'):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")


def test_second_writer_on_a_busy_run_is_refused_and_writes_nothing(demo_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["prepare", "--data", str(demo_data), "--out", str(run), "--quiet"]) == 0
    before = snapshot(run)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (["prepare", "--data", str(demo_data), "--out", str(run), "--seed", "7"],
                     ["train", "--data", str(demo_data), "--out", str(run), "--arch", "simple_cnn"],
                     ["tune-threshold", str(run)], ["evaluate", str(run)]):
            assert main([*argv, "--quiet"]) == 2, argv
            err = capsys.readouterr().err
            assert f"another skinlesion command is writing into {run}" in err and "Remedy:" in err, argv
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing anything by hand: the OS dropped its lock
    assert main(["prepare", "--data", str(demo_data), "--out", str(run), "--seed", "7", "--quiet"]) == 0
    assert snapshot(run) != before


def test_a_failed_command_leaves_no_run_folder_behind(tmp_path, capsys):
    out = tmp_path / "new-run"
    assert main(["prepare", "--data", str(tmp_path / "no-such-data"), "--out", str(out), "--quiet"]) == 2
    assert "no-such-data" in capsys.readouterr().err
    assert not out.exists()


def test_the_lock_file_is_left_in_place_after_success(demo_data, tmp_path):
    run = tmp_path / "run"
    assert main(["prepare", "--data", str(demo_data), "--out", str(run), "--quiet"]) == 0
    assert (run / LOCK_NAME).is_file() and (run / "split.csv").is_file()
