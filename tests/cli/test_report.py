import json


def test_report_command_writes_curves_and_page_after_a_run(make_app, invoke):
    app_dir = make_app()
    summary = json.loads(invoke("run", app_dir, "--json").stdout.strip().splitlines()[-1])
    out_dir = app_dir / "runs" / summary["out_dir"].rsplit("/", 1)[-1]
    result = invoke("report", out_dir)
    assert result.exit_code == 0
    assert (out_dir / "curves.png").exists() and (out_dir / "report.html").exists()
    assert "report.html" in result.stdout


def test_report_command_on_a_wrong_folder_is_one_clear_error(invoke, tmp_path):
    result = invoke("report", tmp_path)
    assert result.exit_code == 1
    assert "metrics.jsonl does not exist" in result.output and "Traceback" not in result.output


def _run_folder(folder, strategy, accuracies, times=None):
    """A hand-written run folder: server accuracy per round, and simulated time if given."""
    folder.mkdir(parents=True)
    lines = [
        {
            "round": r,
            **({} if times is None else {"simulated_time_s": times[r]}),
            "server": {"accuracy": a, "loss": 1 - a},
        }
        for r, a in enumerate(accuracies)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = {"app": {"name": "demo"}, "run_config": {"strategy": strategy, "seed": 0}}
    (folder / "run.json").write_text(json.dumps(run))
    return folder


def test_report_command_compares_runs_and_prints_a_table(invoke, tmp_path, monkeypatch):
    fedavg = _run_folder(tmp_path / "a", "fedavg", [0.1, 0.6, 0.86], [0.0, 30.0, 60.0])
    fedbuff = _run_folder(tmp_path / "b", "fedbuff", [0.1, 0.9], [0.0, 12.5])
    monkeypatch.chdir(tmp_path)
    result = invoke("report", fedavg, fedbuff, "--target", "0.85", "--target", "0.5,0.95")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "to X: the first simulated time (round) at which server.accuracy reached X"
    words = [" ".join(line.split()) for line in lines]  # the columns' padding collapsed
    assert words[1].startswith("run rounds") and words[1].endswith("to 0.5 to 0.85 to 0.95")
    assert words[2].startswith("strategy=fedavg 2 1m 00.0s 0.86 0.14")
    assert words[2].endswith("30.0s (round 1) 1m 00.0s (round 2) never")
    assert lines[3].startswith("strategy=fedbuff")
    assert lines[4:] == ["curves: comparison.png", "report: comparison.html"]
    assert (tmp_path / "comparison.png").exists() and (tmp_path / "comparison.html").exists()
    again = invoke("report", fedavg, fedbuff, "--out", tmp_path)
    assert "comparison.html (replaced)" in again.stdout


def test_report_command_falls_back_to_rounds_and_says_so(invoke, tmp_path):
    timed = _run_folder(tmp_path / "timed", "fedbuff", [0.1, 0.9], [0.0, 12.5])
    plain = _run_folder(tmp_path / "plain", "fedavg", [0.1, 0.9])
    result = invoke("report", timed, plain, "--out", tmp_path / "out")
    assert result.exit_code == 0
    assert "note: no simulated time in plain: the runs are compared by round" in result.stdout
    assert "to X: the first round at which" in result.stdout
    assert (tmp_path / "out" / "comparison.png").exists()


def test_report_command_comparison_errors_are_one_line(invoke, tmp_path):
    run = _run_folder(tmp_path / "a", "fedavg", [0.1, 0.9])
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "metrics.jsonl").write_text("")
    cases = [
        (("report", run, tmp_path / "nowhere"), "metrics.jsonl does not exist"),
        (("report", run, failed), "needs two runs with rounds"),
        (("report", run, run), "given twice"),
        (("report", run, "--target", "0.8"), "give two or more run folders"),
        (("report", run, _run_folder(tmp_path / "b", "x", [0.2]), "--target", "high"), "'high'"),
        (("report", run, tmp_path / "b", "--metric", "loss"), "they have: server.accuracy"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert message in result.output and "Traceback" not in result.output, result.output
