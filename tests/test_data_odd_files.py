"""NONMEM files as people have them (tests/data/odd/): read, or refused by their cause.

Each file goes through ``itp-pd check-data`` (in this process, through the CLI's ``main``;
one case also as a subprocess): the exit code, the message fragments, and that the working
folder is unchanged afterwards (every file hashed before and after, no file added).
"""

import hashlib
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from itp_pd.cli import main
from itp_pd.data import read_nonmem
from itp_pd.data.nonmem import read_nonmem_report
from itp_pd.data.plausibility import DataWarning, dv_scale_warnings
from itp_pd.errors import DatasetError, SpecError

ODD = Path(__file__).parent / "data" / "odd"
ROOT = Path(__file__).parents[1]

# (file, extra arguments) -> (exit code, fragments of stdout + stderr, fragments that must not appear)
CASES = {
    ("pheno_like.dta", ()): (0, ["OK — 12 patients, 48 records", "whitespace-separated (detected)",
                                 "units from units file", "TIME h, AMT mg"], ["note:"]),
    ("semicolon.csv", ()): (0, ["OK — 2 patients", "semicolon-separated (detected)"], []),
    ("tab.txt", ()): (0, ["OK — 2 patients", "tab-separated (detected)"], []),
    ("semicolon.csv", ("--sep", "comma")): (
        2, ["1 problem found", "one column, 'ID;TIME;EVID;AMT;DV'", "looks semicolon-separated",
            "--sep semicolon", "leave sep out"], ["missing required column"]),
    ("pheno_like.dta", ("--sep", ",")): (
        2, ["1 problem found", "looks whitespace-separated", "--sep whitespace"], ["missing required column", "row 1"]),
    ("rows_split_otherwise.csv", ()): (
        2, ["1 problem found", "5 of 5 rows", "the rows look whitespace-separated while the header is comma-separated"],
        ["row 2:"]),
    ("decimal_comma.csv", ()): (2, ["1 problem found", "row 2, column DV", "'5,2', a decimal comma"], []),
    ("no_header.dta", ()): (2, ["1 problem found", "holds numbers, not column names", "no header line"], []),
    ("hash_comments.csv", ()): (0, ["OK — 2 patients, 5 records", "2 comment lines skipped (IGNORE=#)"], []),
    ("at_comments.dta", ()): (
        2, ["1 problem found", "'TABLE NO.  1', does not name the columns ID and TIME", "line 2 does",
            "--ignore @"], []),
    ("at_comments.dta", ("--ignore", "@")): (
        0, ["OK — 2 patients, 5 records", "whitespace-separated (detected), 3 comment lines skipped (IGNORE=@)"], []),
    ("sex_text.csv", ()): (
        2, ["1 problem found", "column SEX: text, not numbers, in all 12 rows", "'M', 'F'", "--drop SEX",
            'drop = ["SEX"]'], ["row 1 (ID 1)"]),
    ("sex_text.csv", ("--drop", "SEX")): (0, ["OK — 6 patients", "covariates: none"], []),
    ("sex_text.csv", ("--keep", "ID,TIME,EVID,AMT", "--keep", "DV")): (0, ["OK — 6 patients", "covariates: none"], []),
    ("huge_dose.csv", ()): (
        2, ["1 problem found", "row 3 (ID 2), column AMT: found 1e+300", "float64", "check the value and its unit"],
        ["no starting point"]),
    ("huge_values.csv", ()): (
        2, ["2 problems found", "row 3 (ID 2), column AMT: found 1e+300", "row 4 (ID 2), column DV: found 2e+16"], []),
    ("hours_no_sidecar.csv", ()): (
        0, ["OK — 3 patients", "hours_no_sidecar.csv: no units declared", "assuming time in days",
            "hours_no_sidecar.units.toml", "warning:", "column II", "12 days", "typical of hours", 'TIME = "h"',
            "units assumed, none declared"], []),
    ("semicolon.csv", ("--sep", "pipe")): (2, ["sep 'pipe' is not a known delimiter", "whitespace"], []),
}


def tree_hashes(folder: Path) -> dict:
    return {path.relative_to(folder): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    folder = tmp_path / "work"
    shutil.copytree(ODD, folder)
    monkeypatch.chdir(folder)
    before = tree_hashes(folder)
    yield folder
    assert tree_hashes(folder) == before  # nothing written, changed or added


def test_every_odd_file_has_a_case():
    used = {name for name, _ in CASES}
    assert used == {path.name for path in ODD.iterdir() if not path.name.endswith(".units.toml")}


@pytest.mark.parametrize("name,extra", sorted(CASES), ids=lambda x: str(x))
def test_check_data_reads_or_refuses_by_the_cause(corpus, capsys, name, extra):
    code, fragments, absent = CASES[(name, extra)]
    assert main(["check-data", name, *extra]) == code
    out, err = capsys.readouterr()
    text = out + err
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    for fragment in absent:
        assert fragment not in text, (fragment, text)
    assert "Traceback" not in text
    if code == 2:
        assert name in err and not out  # the message names the file; nothing on stdout
    else:
        assert out.startswith(f"{name}: OK")


def test_check_data_through_the_real_entry_point(corpus):
    result = subprocess.run([sys.executable, "-m", "itp_pd.cli", "check-data", "pheno_like.dta", "--sep", ","],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "looks whitespace-separated" in result.stderr
    assert result.stderr.count("\n  - ") == 1


def test_the_units_assumed_are_said_on_every_run(corpus, capsys):
    for _ in range(2):
        assert main(["check-data", "semicolon.csv"]) == 0
        err = capsys.readouterr().err
        assert "semicolon.csv: no units declared" in err and "time in days" in err and "semicolon.units.toml" in err


def test_a_whitespace_file_reads_like_its_csv_twin(tmp_path):
    csv = tmp_path / "a.csv"
    dta = tmp_path / "a.dta"
    csv.write_text("ID,TIME,AMT,DV\n1,0,100,.\n1,2,.,5.5\n")
    dta.write_text("ID   TIME  AMT  DV\n 1  0  100   .\n\n 1  2  .  5.5\n")
    assert read_nonmem(dta) == read_nonmem(csv)
    assert read_nonmem(dta, sep="whitespace") == read_nonmem(dta, sep=" ")
    assert read_nonmem(dta).source_rows == (1, 3)


def test_reading_options_from_the_sidecar(tmp_path):
    path = tmp_path / "run1.dta"
    path.write_text("TABLE NO. 1\nID TIME AMT DV SEX\n1 0 100 . M\n@ note\n1 2 . 5.5 M\n")
    (tmp_path / "run1.units.toml").write_text('TIME = "h"\n\n[read]\nignore = "@"\ndrop = ["SEX"]\n')
    report = read_nonmem_report(path)
    assert report.skipped == (1, 4) and report.ignore == "@" and report.delimiter == "whitespace"
    assert report.dataset.table["TIME"].tolist() == [0.0, 2 / 24] and report.dataset.covariates == ()
    # An argument wins over the sidecar: no comment lines, so the first line is the header.
    with pytest.raises(DatasetError, match="does not name the columns ID and TIME"):
        read_nonmem(path, ignore="")
    (tmp_path / "run1.units.toml").write_text('[read]\nsep = "pipe"\n')
    with pytest.raises(DatasetError, match=r"run1.units.toml: \[read\] sep 'pipe'"):
        read_nonmem(path)


def test_keep_names_the_columns_read(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("ID,TIME,AMT,DV,SEX,NOTE\n1,0,100,.,M,first\n1,2,.,5.5,M,.\n")
    assert list(read_nonmem(path, keep=["id", "time", "amt", "dv"]).table.columns)[:2] == ["ID", "TIME"]
    with pytest.raises(DatasetError, match="keep= names column WT, which is not in the data"):
        read_nonmem(path, keep=["ID", "TIME", "AMT", "DV", "WT"])


def test_python_api_warns_about_hour_like_intervals():
    with pytest.warns(DataWarning, match="column II.*typical of hours"):
        read_nonmem(ODD / "hours_no_sidecar.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        read_nonmem(ODD / "hours_no_sidecar.csv", units={"TIME": "h"})  # declared: no warning


def test_concentrations_implausible_for_the_spec_units_are_named():
    from itp_pd.spec import load_spec

    spec = load_spec(ROOT / "models" / "pk_2cmt_iv.toml")
    dataset = read_nonmem(ODD / "semicolon.csv")  # 100 mg doses, DV about 4
    assert dv_scale_warnings(dataset, spec.observations, source="s.csv", spec="pk.toml") == []
    ng_per_ml = read_nonmem(ODD / "semicolon.csv", units={"DV": "mg/L"}).table.copy()
    ng_per_ml["DV"] *= 1000  # 4000: ng/mL read as mg/L
    from itp_pd.data import Dataset

    messages = dv_scale_warnings(Dataset(ng_per_ml, dataset.units, (), dataset.source_rows), spec.observations,
                                 source="s.csv", spec="pk.toml")
    assert len(messages) == 1 and "s.csv: column DV (DVID 1, CP, in mg/L as the spec pk.toml says)" in messages[0]
    assert "ng/mL" in messages[0]


def _recipe(folder: Path, data_lines: str = "", model_lines: str = 'estimate = ["CL", "V1"]') -> Path:
    from itp_pd.inference import file_sha256

    shutil.copy(ODD / "sex_text.csv", folder / "d.csv")
    path = folder / "r.toml"
    path.write_text(f'[fit]\nname = "r"\nmethod = "map"\nseed = 1\n\n[data]\npath = "d.csv"\n'
                    f'sha256 = "{file_sha256(folder / "d.csv")}"\n{data_lines}\n\n[model]\n'
                    f'spec = "{(ROOT / "models" / "pk_2cmt_iv.toml").as_posix()}"\n{model_lines}\n')
    return path


def test_recipe_data_options_are_parsed_and_checked(tmp_path):
    from itp_pd.inference import load_recipe

    recipe = load_recipe(_recipe(tmp_path, 'drop = ["SEX"]\nsep = "comma"\nignore = "#@"\n'
                                           'units = { TIME = "h", DV = { 1 = "ng/mL" } }'))
    assert recipe.data_drop == ("SEX",) and recipe.data_sep == "comma" and recipe.data_ignore == "#@"
    assert recipe.declared_units() == {"TIME": "h", "DV": {"1": "ng/mL"}}
    report = recipe.read_data_report()
    assert report.dataset.covariates == () and report.units_from.startswith(f"recipe {recipe.path}")
    assert report.dataset.table["TIME"].tolist()[1] == 1 / 24
    path = _recipe(tmp_path, 'drop = "SEX"\nsep = "pipe"\nignore = "1"\nunits = { TIME = "hours2", MDV = "1" }')
    with pytest.raises(SpecError) as caught:
        load_recipe(path)
    message = str(caught.value)
    for field in ("data.drop", "data.sep", "data.ignore", "data.units.TIME", "data.units.MDV"):
        assert f"{path}: {field}" in message, (field, message)


def test_a_recipe_naming_a_parameter_the_spec_lacks_is_the_recipes_problem(tmp_path):
    from itp_pd.inference import load_recipe, recipe_spec

    path = _recipe(tmp_path, model_lines='estimate = ["CL", "KA"]\nrandom_effects = ["CL", "Q"]')
    with pytest.raises(SpecError) as caught:
        recipe_spec(load_recipe(path))
    message = str(caught.value)
    assert message.startswith(f"2 problems found in {path}")
    assert f"{path}: model.estimate: found 'KA'" in message and "pk_2cmt_iv.toml" in message
    assert f"{path}: model.random_effects: found 'Q'" in message


def test_fit_refuses_bad_data_before_fitting_naming_each_file(tmp_path, capsys):
    path = _recipe(tmp_path)
    run = ["fit", str(path), "--out", str(tmp_path / "out")]
    assert main(run) == 2
    err = capsys.readouterr().err
    assert f"in {tmp_path / 'd.csv'}" in err and "--drop SEX" in err
    # Past the text column, the spec's BSA effect needs a column the data lacks: both files named.
    assert main([*run, "--drop", "SEX"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'd.csv'}: column BSA" in err and "pk_2cmt_iv.toml" in err
    assert "d.csv: no units declared" in err
    assert not (tmp_path / "out").exists()
