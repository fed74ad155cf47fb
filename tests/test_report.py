"""The HTML report, opened in headless Chromium, and the exploration notebook, run top to bottom.

Both use the real smoke search shared with tests/test_analysis.py. The browser test
needs Debian's chromium (apt-get install chromium) and Playwright's Python package,
which drives that browser (no browser download); the notebook test needs nbclient,
nbformat and ipykernel. Each skips, saying what is missing, without them.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from analysis import report
from test_analysis import ROOT, shared_experiment

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    return shared_experiment(tmp_path_factory)


@pytest.fixture(scope="module")
def report_file(experiment, tmp_path_factory) -> Path:
    return report.build_report([experiment], tmp_path_factory.mktemp("report") / "report.html", k=2,
                               seconds=1.5, prime_seconds=0.5, evaluate=True, max_utterances=2,
                               log=lambda line: None)


def test_report_is_one_self_contained_file(report_file):
    text = report_file.read_text()
    assert "src=\"data:image/png;base64," in text and "src=\"data:audio/wav;base64," in text
    # nothing to fetch: no link to another file or server
    assert "src=\"http" not in text and "src=\"file:" not in text and "<link" not in text
    assert "could not be made" not in text
    for heading in ("How the trials ended", "Leaderboard", "Figures", "VRNN, trial", "SRNN-GM, trial f0f0f0f0",
                    "Beside the DVAE review's figures", "Spearman rank correlation with the review"):
        assert heading in text
    assert "raw ITU-T P.862 narrowband" in text  # the protocol is stated with the scores


def test_report_renders_in_chromium(report_file):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install the Debian packages chromium and chromium-driver")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(report_file.as_uri(), wait_until="load")
            tables = page.evaluate("""() => [...document.querySelectorAll('table')].map(t =>
                [t.querySelectorAll('thead th').length, t.querySelectorAll('tbody tr').length, t.offsetHeight])""")
            images = page.evaluate("""() => [...document.images].map(i => [i.alt, i.complete, i.naturalWidth])""")
            # every player: the browser can decode its source, loads it without an error, and knows its length
            page.wait_for_function("""() => [...document.querySelectorAll('audio')].every(a =>
                a.error !== null || a.readyState >= 1)""", timeout=30_000)
            players = page.evaluate("""() => [...document.querySelectorAll('audio')].map(a =>
                [a.canPlayType('audio/wav'), a.error && a.error.code, a.readyState, a.duration])""")
        finally:
            browser.close()

    # how the trials ended, the best of each model, the top k of each of the two models, the test
    # results and the same beside the review's figures
    assert len(tables) == 6 and all(columns > 0 and rows > 0 and height > 0 for columns, rows, height in tables)
    figures = {"learning_curves", "hyperparameters", "asha_rungs", "importances"}
    assert figures <= {alt for alt, _, _ in images}
    assert len(images) == len(figures) + 2 * 4  # four examples for each model
    assert all(complete and width > 0 for _, complete, width in images), images
    assert len(players) == 2 * 4
    for can_play, error, ready, duration in players:
        assert can_play in ("maybe", "probably") and error is None and ready >= 1 and duration > 0, players


def test_notebook_runs_top_to_bottom(experiment, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed")
    monkeypatch.setenv("DVAE_EXPERIMENT", str(experiment))
    notebook = nbformat.read(ROOT / "notebooks" / "explore_results.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("<table" in h and "SRNN-GM" in h for h in html)  # the leaderboard
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # curves and a hyperparameter
    assert any("<audio" in h and "data:audio/x-wav;base64," in h for h in html)  # IPython.display.Audio


def test_report_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        report.main(["--help"])
    assert exit_.value.code == 0 and "--evaluate" in capsys.readouterr().out
    assert report.main([str(tmp_path / "nothing")]) == 2
    assert "no experiment folder" in capsys.readouterr().err
