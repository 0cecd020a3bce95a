from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.evaluate.casewise import write_metrics_csv
from medseg.report.pages import cell, write_report


def _row(case: str, dice: float, hd95: float, label: int = 1, name: str = "lesion", **more: float) -> dict:
    return {
        "case": case,
        "label": label,
        "class": name,
        "dice": dice,
        "iou": dice,
        "jaccard_thresholded": dice,
        "hd95": hd95,
        "nsd": dice,
        "ref_volume": 100.0,
        "pred_volume": 100.0 * (1 + dice),
        **more,
    }


def test_summary_tables_and_html(tmp_path: Path) -> None:
    write_metrics_csv(tmp_path / "fold_0" / "metrics.csv", [_row("a", 0.8, 2.0), _row("b", 0.6, 4.0)])
    write_metrics_csv(tmp_path / "fold_1" / "metrics.csv", [_row("c", 1.0, 0.0), _row("d", 0.0, math.inf)])
    (tmp_path / "datalist.json").write_text(
        json.dumps({"cases": [{"image": "x.nii.gz"}] * 5, "bad_cases": [{"id": "e", "reason": "no mask"}]})
    )
    summary = write_report(tmp_path, "t")
    assert summary["classes"] == ["lesion"] and summary["distance_unit"] == "mm"
    fold0 = summary["folds"]["0"]["lesion"]
    assert fold0["dice"]["mean"] == pytest.approx(0.7) and fold0["dice"]["std"] == pytest.approx(0.1)
    overall = summary["overall"]["lesion"]
    assert overall["dice"]["mean"] == pytest.approx(0.6)
    assert overall["hd95"]["n_infinite"] == 1 and overall["hd95"]["mean"] == pytest.approx(2.0)
    assert summary["fold_mean"]["lesion"]["dice"]["mean"] == pytest.approx(0.6)  # (0.7 + 0.5) / 2
    assert summary["fold_mean"]["mean"]["dice"]["mean"] == pytest.approx(0.6)  # one class: the same
    md = (tmp_path / "report.md").read_text()
    assert "| 0 | 0.7000 ± 0.1000" in md and "e: no mask" in md
    assert "HD95 (mm)" in md and "| 0.0000; inf in 1 |" in md  # fold 1: one finite case, one infinite
    assert "| 2.0000 ± 1.6330; inf in 1 |" in md  # all cases: 2, 4, 0 and one infinite
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # boxplots and volumes; curves have no history
    assert 'src="http' not in page and "https://" not in page  # nothing fetched from a network
    assert "Not drawn: no fold has a history.csv yet" in page  # a reason, not an empty plot
    assert 'id="cases"' in page and page.count('<tr data-fold="') == 4  # the case browser
    assert "<h2>Provenance</h2>" in page and "medseg version" in page
    assert json.loads((tmp_path / "summary.json").read_text())["n_cases"] == 5


def test_cells_say_inf_instead_of_nan_and_leave_out_the_std_of_one_case() -> None:
    assert cell({"n": 3, "n_infinite": 3, "mean": math.nan, "std": math.nan}) == "inf (3 cases)"
    assert cell({"n": 1, "n_infinite": 1, "mean": math.nan, "std": math.nan}) == "inf (1 case)"
    assert cell({"n": 1, "n_infinite": 0, "mean": 0.5, "std": 0.0}) == "0.5000"
    assert cell({"n": 3, "n_infinite": 1, "mean": 0.5, "std": 0.1}) == "0.5000 ± 0.1000; inf in 1"
    assert cell({"n": 0, "n_infinite": 0, "mean": math.nan, "std": math.nan}) == "-"


def test_class_names_and_the_class_mean_in_every_table(tmp_path: Path) -> None:
    rows = []
    for i, (d1, d2) in enumerate([(0.9, 0.5), (0.7, 0.3)]):
        rows += [_row(f"c{i}", d1, 1.0, 1, "liver"), _row(f"c{i}", d2, math.inf, 2, "spleen")]
    write_metrics_csv(tmp_path / "fold_0" / "metrics.csv", rows)
    summary = write_report(tmp_path, "t")
    assert list(summary["overall"]) == ["liver", "spleen", "mean"]
    assert summary["overall"]["mean"]["dice"]["mean"] == pytest.approx(0.6)
    assert summary["overall"]["spleen"]["hd95"]["n_infinite"] == 2
    md = (tmp_path / "report.md").read_text()
    assert "## liver" in md and "## spleen" in md and "## mean over classes" in md
    assert "inf (2 cases)" in md and "nan" not in md.split("## Metric definitions")[0]
    assert "label_1" not in md
    page = (tmp_path / "report.html").read_text()
    assert 'data-class="spleen"' in page and 'data-class="mean"' in page


def test_pictures_are_measured_in_pixels(tmp_path: Path) -> None:
    write_metrics_csv(tmp_path / "fold_0" / "metrics.csv", [_row("a", 0.8, 2.0)])
    (tmp_path / "datalist.json").write_text(json.dumps({"cases": [{"image": "a.jpg"}]}))
    summary = write_report(tmp_path, "t")
    assert summary["distance_unit"] == "px"
    md = (tmp_path / "report.md").read_text()
    assert "HD95 (px)" in md and "| 0 | 0.8000 |" in md  # one case: no std


def test_3d_overlay_slice_is_shown_the_radiological_way():
    from medseg.report.overlays import display_slice

    # canonical RAS+ volume: x grows towards the patient's right, y towards anterior, z upwards
    vol = np.zeros((1, 5, 4, 3))
    ref = np.zeros((5, 4, 3), bool)
    ref[:, :, 1] = True
    vol[0, 4, 3, 1] = 7  # x = 4 (the patient's far right), y = 3 (most anterior)
    img, r, _ = display_slice(vol, ref, ref)
    assert img.shape == (4, 5)
    assert img[0, 0] == 7  # anterior at the top, the patient's right on the left of the picture


def test_3d_overlay_shows_three_planes_through_the_structure() -> None:
    from medseg.report.overlays import centre, overlay_figure, planes

    ref = np.zeros((20, 16, 12), np.int64)
    ref[4:8, 10:14, 2:6] = 1
    ref[12:16, 2:6, 6:10] = 2
    at = centre(ref, ref)
    assert at == (10, 8, 6)
    axial, coronal, sagittal = planes(ref, at)
    assert axial.shape == (16, 20) and coronal.shape == (12, 20) and sagittal.shape == (12, 16)
    image = np.full((1, 20, 16, 12), -1000.0)
    fig = overlay_figure(image, ref, ref, {1: "liver", 2: "spleen"}, "case", [1.0, 1.0, 2.5])
    titles = [ax.get_title() for ax in fig.axes]
    assert "reference: axial slice 6" in titles and "prediction: sagittal slice 10" in titles
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["liver", "spleen"]
    assert fig.axes[0].images[0].get_clim() == (-160.0, 240.0)  # CT: the soft-tissue window
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_report_shows_the_worst_cases_it_has_and_says_how_many(tmp_path: Path) -> None:
    from medseg.io.raster import write_png

    rows: dict[int, list] = {0: [], 1: []}
    for i in range(12):
        fold, dice = i % 2, i / 20
        rows[fold].append(_row(f"c{i:02d}", dice, 1.0))
        if i != 0:
            write_png(tmp_path / f"fold_{fold}" / "overlays" / f"c{i:02d}.png", np.zeros((4, 4), np.uint8))
    for fold, fold_rows in rows.items():
        write_metrics_csv(tmp_path / f"fold_{fold}" / "metrics.csv", fold_rows)
    write_report(tmp_path, "t")
    page = (tmp_path / "report.html").read_text()
    captions = [c.split("</figcaption>")[0] for c in page.split("<figcaption>")[1:]]
    assert len(captions) == 10 and "The 10 worst cases" in page
    assert captions[0] == "fold 1, c01: Dice 0.0500"  # c00 has no overlay
    assert 'src="fold_1/overlays/c01.png"' in page  # relative: the folder can move
    assert "MedPy" in page and "image diagonal" in page
    for p in (tmp_path / "fold_0" / "overlays").glob("*.png"):
        p.unlink()
    write_report(tmp_path, "t")
    assert "The 6 worst cases" in (tmp_path / "report.html").read_text()


def test_the_worst_cases_shown_are_evaluate_n_worst_of_the_run(tmp_path: Path) -> None:
    from medseg.io.raster import write_png

    rows = [_row(f"c{i:02d}", i / 20, 1.0) for i in range(8)]
    write_metrics_csv(tmp_path / "fold_0" / "metrics.csv", rows)
    for r in rows:
        write_png(tmp_path / "fold_0" / "overlays" / f"{r['case']}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "config.yaml").write_text("name: t\nevaluate:\n  n_worst: 3\n")
    assert write_report(tmp_path, "t")["n_worst"] == 3
    page = (tmp_path / "report.html").read_text()
    assert "The 3 worst cases" in page and page.count("<figcaption>") == 3
    assert "c00: Dice 0.0000" in page and "c03" not in page.split("<h2>The 3 worst")[1]
    write_report(tmp_path, "t", n_worst=0)  # the pipeline passes its own setting
    assert "None shown (evaluate.n_worst: 0)" in (tmp_path / "report.html").read_text()


def test_the_command_is_recorded_as_typed_with_credentials_masked() -> None:
    from medseg.provenance import command_line

    typed = [
        "/home/ann/.venv/bin/medseg", "run", "pipelines/demo.yaml",
        "--set", "train.epochs=2", "--set", "data.root=../data/ph2",
        "--set", "tracking.uri=postgresql://ann:s3cret@db:5432/mlflow",
        "-s", "predict.dicomweb.password_file=/home/ann/pw",
        "--set", "name=my study", "--tracking-uri", "http://bob:pw@host/",
        "--fold", "1",
    ]  # fmt: skip
    assert command_line(typed) == (
        "medseg run pipelines/demo.yaml --set train.epochs=2 --set data.root=../data/ph2 "
        "--set tracking.uri=*** -s predict.dicomweb.password_file=*** --set 'name=my study' "
        "--tracking-uri *** --fold 1"
    )
    assert "s3cret" not in command_line(typed) and "pw" not in command_line(typed).replace("password", "")
    url = "dicomweb+http://alice:FAKE/PW-333@127.0.0.1:1/dicom-web"  # a "/" in the password
    assert (
        command_line(["medseg", "predict", "-i", url])
        == "medseg predict -i 'dicomweb+http://***@127.0.0.1:1/dicom-web'"
    )
    assert command_line(["/x/medseg/__main__.py", "report", "runs/demo"]) == "medseg report runs/demo"


def test_the_page_gives_the_medseg_ui_command_that_works_from_here(tmp_path: Path, monkeypatch) -> None:
    from medseg.report.cases import ui_command

    run = tmp_path / "runs" / "demo"
    write_metrics_csv(run / "fold_0" / "metrics.csv", [_row("a", 0.8, 2.0)])
    monkeypatch.chdir(tmp_path)
    write_report(run, "demo")  # as the pipeline gives it: an absolute path
    assert "<code>medseg ui runs/demo</code>" in (run / "report.html").read_text()
    write_report(Path("runs/demo"), "demo")  # as typed: `medseg report runs/demo`
    assert "<code>medseg ui runs/demo</code>" in (run / "report.html").read_text()
    monkeypatch.chdir(run / "fold_0")
    assert ui_command(run) == f"medseg ui {run}"  # outside the current folder: the whole path
    assert ui_command(Path("/data/my runs/x")) == "medseg ui '/data/my runs/x'"


def test_an_auroc_from_one_bad_case_is_not_shown(tmp_path: Path) -> None:
    rows = [_row(f"c{i}", 0.95, 1.0, uncertainty=i / 100) for i in range(9)] + [
        _row("bad", 0.5, 9.0, uncertainty=0.5)
    ]
    write_metrics_csv(tmp_path / "fold_0" / "metrics.csv", rows)
    summary = write_report(tmp_path, "t")
    assert summary["uncertainty"]["auroc"] is None and summary["uncertainty"]["n_low"] == 1
    md = (tmp_path / "report.md").read_text()
    assert "1 have a class-mean Dice below 0.9 and 9 do not: no AUROC" in md and "AUROC 1.000" not in md
