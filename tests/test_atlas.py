"""The atlas: seeded samples, one atomic record per (rule, group), floors not trained, resume
after an interruption, the summary, and `gzoo atlas`."""

import json

import pytest

from gzoo.atlas import (
    RECORD_KEYS,
    format_summary,
    read_records,
    run_atlas,
    sample_rules,
    summarize,
)
from gzoo.ca import get_family
from gzoo.cli import main
from gzoo.models import build_model
from gzoo.train import TrainConfig
from gzoo.verify import symmetry_floor

pytestmark = pytest.mark.usefixtures("one_thread")

#: a small budget: some rules become exact, the records and the resume are what is tested
QUICK = TrainConfig(steps=60, restarts=0, population=2, check_every=20)


def test_sample_rules():
    a = sample_rules("outer_totalistic", 300, seed=4)
    assert a == sample_rules("outer_totalistic", 300, seed=4) != sample_rules(
        "outer_totalistic", 300, seed=5)
    assert all(r.family == "outer_totalistic" for r in a)
    for n in range(9):  # every birth and survival count about half the time (B0 included)
        assert 100 < sum(n in r.birth for r in a) < 200
        assert 100 < sum(n in r.survival for r in a) < 200
    assert all(r.family == "von_neumann" for r in sample_rules("von_neumann", 20))
    iso = sample_rules("isotropic", 20)
    assert all(r.in_family("isotropic") for r in iso)
    assert sum(r.family == "isotropic" for r in iso) >= 19  # 102 classes: almost never B/S
    with pytest.raises(ValueError, match="family must be one of"):
        sample_rules("hexagonal", 3)
    with pytest.raises(ValueError, match=r"n must be an int in 1\.\.1000000, got 0"):
        sample_rules("von_neumann", 0)
    with pytest.raises(ValueError, match=r"n must be an int in 1\.\.1000000, got 1000001"):
        sample_rules("von_neumann", 10**6 + 1)  # refused before any rule is drawn


def test_records_floors_and_resume(tmp_path):
    out = tmp_path / "atlas"
    lines: list[str] = []
    recs = run_atlas(out, family="von_neumann", n_rules=2, groups=["p4", "p8"], seed=1,
                     config=QUICK, in_flight=2, log=lines.append)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert files == ["atlas.json", "records/p4/0000.json", "records/p4/0001.json",
                     "records/p8/0000.json", "records/p8/0001.json"]
    assert not [p for p in out.rglob(".*")]  # no temporary file left
    assert len(lines) == 2  # p8 cannot represent V rules: recorded, not trained
    by = {(r["group"], r["index"]): r for r in recs}
    rules = sample_rules("von_neumann", 2, seed=1)
    for i, rule in enumerate(rules):
        floor = by[("p8", i)]
        assert floor["status"] == "floor" and floor["floor"] == symmetry_floor(rule, "p8") > 0
        assert floor["exact"] is None and floor["steps"] is None
        rec = by[("p4", i)]
        assert set(rec) == set(RECORD_KEYS) and rec["rule"] == str(rule)
        assert rec["status"] in ("exact", "not exact") and rec["floor"] == 0
        assert rec["n_params"] == build_model("p4").n_params and rec["in_flight"] == 2
        names = set(get_family("von_neumann").class_names)
        assert set(rec["hard_classes"]) <= names and set(rec["wrong_classes"]) <= names
        assert (rec["status"] == "exact") == (rec["n_wrong"] == 0 == len(rec["wrong_classes"]))
    # an interrupted atlas: one record lost; the rest is not trained again
    kept = out / "records/p4/0000.json"
    before = kept.read_text()
    (out / "records/p4/0001.json").unlink()
    lines.clear()
    again = run_atlas(out, family="von_neumann", n_rules=2, groups=["p4", "p8"], seed=1,
                      config=QUICK, in_flight=2, log=lines.append)
    assert len(lines) == 1 and str(rules[1]) in lines[0]
    assert kept.read_text() == before and len(again) == 4
    assert sorted(read_records(out), key=str) == sorted(again, key=str)
    with pytest.raises(ValueError, match="another sample or recipe"):
        run_atlas(out, family="von_neumann", n_rules=2, groups=["p4", "p8"], seed=2,
                  config=QUICK)


def test_an_interruption_loses_only_the_job_in_flight(tmp_path):
    out = tmp_path / "atlas"

    def stop(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # after the first record is written
        run_atlas(out, n_rules=3, groups=["p4"], config=QUICK, in_flight=1, log=stop)
    assert [r["index"] for r in read_records(out)] == [0]
    done = run_atlas(out, n_rules=3, groups=["p4"], config=QUICK, in_flight=1)
    assert sorted(r["index"] for r in done) == [0, 1, 2]


def test_summary_leaves_floors_out_of_the_success_rate():
    def rec(group, status, seconds=1.0):
        return {"family": "von_neumann", "group": group, "status": status,
                "exact": {"exact": True, "not exact": False}.get(status), "seconds": seconds,
                "cpu_seconds": seconds / 2, "draws": 4}

    rows = summarize([rec("p4", "exact", 1.0), rec("p4", "exact", 3.0),
                      rec("p4", "not exact", 9.0), rec("p8", "floor"), rec("p8", "floor")])
    p4, p8 = rows
    assert (p4["group"], p4["jobs"], p4["exact"], p4["not_exact"]) == ("p4", 3, 2, 1)
    assert p4["success"] == pytest.approx(2 / 3) and p4["median_seconds"] == 2.0
    assert p4["median_cpu_seconds"] == 1.0
    assert (p8["floor"], p8["trained"], p8["success"]) == (2, 0, None)
    table = format_summary(rows)
    assert "| von_neumann | p4 | 3 | 0 | 2 | 1 | 66.7 % | 2.0 |" in table


@pytest.mark.slow
def test_a_seeded_sample_trains_exact(tmp_path):
    """The default recipe on a few seeded rules of each family and group: every trainable
    pair exact, proved."""
    records = []
    for family, n, groups in (("outer_totalistic", 2, ["p4", "p4m", "p8"]),
                              ("von_neumann", 1, ["p4", "p4m"]),
                              ("isotropic", 1, ["p4m"])):
        records += run_atlas(tmp_path / family, family=family, n_rules=n, groups=groups,
                             seed=11, in_flight=4)
    assert len(records) == 9 and all(r["exact"] for r in records), [
        (r["rule"], r["group"], r["n_wrong"]) for r in records if not r["exact"]]


def test_cli_atlas(tmp_path, capsys):
    out = tmp_path / "a"
    args = ["atlas", "--out", str(out), "--family", "von_neumann", "--rules", "1", "--groups",
            "p4", "--steps", "40", "--population", "2", "--restarts", "0", "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| von_neumann | p4 | 1 |" in text and "atlas.png" in text
    assert json.loads((out / "summary.json").read_text())["summary"][0]["jobs"] == 1
    assert (out / "atlas.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "atlas.json").read_text())
    assert manifest["recipe"]["steps"] == 40 and manifest["recipe"]["population"] == 2
    rec = read_records(out)[0]
    net = build_model("p4")
    assert rec["n_params"] == net.n_params
    assert main([*args[:-1], "--rules", "2"]) == 2  # another sample in the same folder
    assert "another sample or recipe" in capsys.readouterr().err


def test_atlas_record_of_a_failure_names_the_wrong_classes(tmp_path):
    recs = run_atlas(tmp_path, n_rules=1, groups=["p4"], seed=3,
                     config=TrainConfig(steps=2, restarts=0, population=1, check_every=1),
                     in_flight=1)
    [rec] = recs
    assert rec["status"] == "not exact" and rec["n_wrong"] > 0
    assert sum(rec["wrong_classes"].values()) == rec["n_wrong"]  # each wrong pattern once
    assert sum(rec["hard_classes"].values()) >= rec["n_wrong"]  # wrong at every check


def test_an_atlas_writes_only_into_a_new_empty_or_atlas_folder(tmp_path, capsys):
    """A file, a folder of other files, a broken manifest or record: one-line errors, and the
    user's files are left as they were."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    mine = tmp_path / "mine"
    (mine / "records").mkdir(parents=True)
    (mine / "records" / "keep.json").write_text("{}")
    args = ["atlas", "--family", "von_neumann", "--rules", "1", "--groups", "p4", "--steps",
            "20", "--population", "1", "--restarts", "0", "--quiet", "--out"]
    assert main([*args, str(notes)]) == 2
    assert f"atlas folder {notes} exists and is not a folder" in capsys.readouterr().err
    assert main([*args, str(mine)]) == 2
    assert "holds other files and no atlas.json" in capsys.readouterr().err
    assert sorted(p.name for p in mine.rglob("*")) == ["keep.json", "records"]
    assert notes.read_text() == "mine"

    out = tmp_path / "a"
    assert main([*args, str(out)]) == 0
    [record] = sorted(out.glob("records/*/*.json"))
    record.write_text("{not json")
    capsys.readouterr()
    assert main([*args, str(out)]) == 2
    err = capsys.readouterr().err
    assert str(record) in err and "cannot read this atlas's record" in err
    (out / "atlas.json").write_text("[1, 2]")
    assert main([*args, str(out)]) == 2
    assert "is not an atlas manifest" in capsys.readouterr().err
