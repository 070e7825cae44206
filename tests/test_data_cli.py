"""The ``l2l-data`` command: info as a table and JSON, show writes PNGs, clear errors."""

import json

from PIL import Image

from l2l_env.data.cli import main

SMALL = ["-o", "num_train=120", "-o", "num_eval=20"]


def test_info_json_counts(tmp_path, capsys):
    assert main(["info", "--data-root", str(tmp_path), "--label-ratio", "0.1", "--json", *SMALL]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"train", "val", "testA", "testB"}
    train = info["train"]
    assert train["expressions"] == 120 and info["val"]["expressions"] == 20
    assert train["labeled_images"] + train["unlabeled_images"] == train["images"]
    assert train["labeled_refs"] + train["unlabeled_refs"] == train["refs"]
    assert train["labeled_images"] == round(0.1 * train["images"])


def test_info_table_and_show_png(tmp_path, capsys):
    assert main(["info", "--data-root", str(tmp_path), *SMALL]) == 0
    assert "expressions" in capsys.readouterr().out
    out = tmp_path / "pics"
    assert main(["show", "--data-root", str(tmp_path), "--split", "testA", "--num", "3",
                 "--out", str(out), *SMALL]) == 0
    grid = Image.open(out / "synthref_testA_grid.png")
    assert grid.width > 256 and len(list(out.glob("synthref_testA_0*.png"))) == 3


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["info", "--dataset", "refcoco", "--data-root", str(tmp_path / "none")]) == 2
    assert "refcoco" in capsys.readouterr().err
    assert main(["info", "-o", "bogus"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
