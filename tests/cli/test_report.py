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
