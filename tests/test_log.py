"""The library is silent unless the application asks: no lines, no bars, no logger levels
changed; the command line turns lines and bars on."""

from __future__ import annotations

import logging
import subprocess
import sys

from ghostsearch import count_flops, log, reference_config
from ghostsearch.progress import progress_bar, progress_shown, show_progress


def test_the_library_prints_nothing_by_default() -> None:
    code = ("import ghostsearch.log as l; l.logger.info('a unit started'); "
            "l.logger.warning('stopped early')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert run.stdout == "" and run.stderr == ""


def test_to_stdout_sends_lines_to_the_current_stdout(capsys) -> None:
    log.to_stdout()
    log.to_stdout()  # idempotent: one handler, one line
    log.logger.info("unit 1/2: done")
    assert capsys.readouterr().out == "unit 1/2: done\n"


def test_state_and_restore_carry_the_setting_to_a_worker() -> None:
    log.to_stdout()
    saved = log.state()
    assert saved == {"stdout": True, "level": logging.INFO}
    code = f"import ghostsearch.log as l; l.restore({saved!r}); l.logger.info('from a worker')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert run.stdout == "from a worker\n"


def test_bars_follow_one_switch() -> None:
    show_progress(False)
    try:
        assert progress_bar(total=3).disable
        show_progress(True)
        assert progress_shown() and not progress_bar(total=3).disable
        assert progress_bar(total=3, disable=True).disable  # a caller may still turn one off
    finally:
        show_progress(False)


def test_counting_leaves_fvcores_logger_level_alone() -> None:
    other = logging.getLogger("fvcore")
    other.setLevel(logging.DEBUG)
    try:
        count_flops(reference_config(0.5), counter="fvcore")
        assert other.level == logging.DEBUG
    finally:
        other.setLevel(logging.NOTSET)
