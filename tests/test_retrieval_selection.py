

def test_select_lr_command_is_registered_and_refuses_a_missing_params_file(tmp_path, capsys):
    """`fedrs retrieval select-lr` is reachable from the CLI; a bad file is one error line, no output."""
    from fedrs.cli import main

    out = tmp_path / "sweep"
    assert main(["retrieval", "select-lr", str(tmp_path / "absent.yaml"), "--lr", "0.1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedrs: error:") and "absent.yaml" in err and "Traceback" not in err
    assert not out.exists()
