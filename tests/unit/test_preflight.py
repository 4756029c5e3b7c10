"""The run folder made before a run and taken back on a usage error (opconform/preflight.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opconform.exitcodes import UsageError
from tests.support.run_folders import files


def test_a_run_folder_that_cannot_be_made_is_a_usage_error(tmp_path: Path) -> None:
    from opconform.preflight import discard_report_dir, make_report_dir

    (tmp_path / "X").write_text("")
    with pytest.raises(UsageError, match="cannot create it"):
        make_report_dir(tmp_path / "X" / "run")
    created = make_report_dir(tmp_path / "new" / "deeper" / "run")
    assert created == tmp_path / "new"
    (tmp_path / "new" / "deeper" / "run" / "junit.xml").write_text("")
    discard_report_dir(tmp_path / "new" / "deeper" / "run", created)
    assert files(tmp_path) == ["X"]
