"""The README's worked example works on a fresh clone exactly as written, and its links stay
inside the repository.

The commands are read from the README itself (the bash and python blocks of "Fitting" and
"Diagnosing a fit") and run, in order, on a copy of the repository's recipes, data and models
in a temporary folder: in the fast test with MAP and 20 steps for every fit (the recipe copy's
method and step counts changed, ``--method`` given as map) and 8 VPC replicates; as written
in the slow one (NUTS, several minutes).
"""

import hashlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from itp_pd.cli import build_parser, main

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def worked_example() -> tuple[list[list[str]], list[str]]:
    """(the itp-pd commands as argument lists, the python blocks) of the worked example."""
    text = README.read_text()
    section = text[text.index("## Fitting"):text.index("## Simulating alternatives")]
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, re.S)
    commands = [shlex.split(line, comments=True) for kind, body in blocks if kind == "bash"
                for line in body.splitlines() if line.startswith("itp-pd ")]
    return commands, [body for kind, body in blocks if kind == "python"]


def outputs(argv: list[str]) -> list[Path]:
    """The folders a worked-example command writes (relative to the repository root)."""
    args = build_parser().parse_args(argv[1:])
    if args.command == "fit":
        import tomllib

        name = tomllib.loads((ROOT / args.recipe).read_text())["fit"]["name"]
        return [Path(args.out) if args.out else Path(args.recipe).parent / name]
    if args.command == "diagnose":
        return [Path(args.out) if args.out else Path(args.fit_dir) / "report"]
    return []


def test_readme_links_stay_inside_the_repository():
    targets = [target for target in LINK.findall(README.read_text()) if not re.match(r"[a-z]+://|#|mailto:", target)]
    assert targets
    for target in targets:
        path = (README.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), target
    assert "../shared" not in README.read_text()


def test_the_worked_example_parses_and_its_outputs_are_not_committed():
    commands, python = worked_example()
    assert [argv[1] for argv in commands] == ["check-data", "hash", "fit", "fit", "diagnose", "diagnose"]
    assert len(python) == 1 and "fit(" in python[0]
    written = [folder for argv in commands for folder in outputs(argv)]
    assert Path("fits/pk_2cmt_example") in written
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "--", *map(str, written), "fits/pk_python"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert tracked == ""  # on a fresh clone these folders do not exist, so no command is refused


def _copy_of_the_repository(folder: Path) -> Path:
    for name in ("fits", "examples", "models"):
        shutil.copytree(ROOT / name, folder / name,
                        ignore=lambda d, names: [n for n in names if (Path(d) / n).is_dir() and Path(d).name == "fits"])
    return folder


def _hashes(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _shrink(recipe: Path) -> None:
    """MAP instead of NUTS and few steps (the recipe's method line and step counts); all else as written."""
    text = recipe.read_text()
    text = re.sub(r'(?m)^method = "nuts"', 'method = "map"', text)
    text = re.sub(r"(?m)^steps = \d+", "steps = 20", text)
    text += "\n[svi]\nsteps = 20\ndraws = 20\n" if "[svi]" not in text else ""
    recipe.write_text(text)


def run_worked_example(folder: Path, monkeypatch, capsys, *, small: bool) -> None:
    commands, python = worked_example()
    copy = _copy_of_the_repository(folder)
    if small:
        _shrink(copy / "fits" / "pk_2cmt_example.toml")
    monkeypatch.chdir(copy)
    inputs = _hashes(copy)
    for argv in commands:
        if small and "--method" in argv:  # one compiled MAP program serves every fit
            argv[argv.index("--method") + 1] = "map"
        if small and argv[1] == "diagnose":  # few replicate datasets for the VPC
            if "--vpc-draws" in argv:
                at = argv.index("--vpc-draws")
                argv = argv[:at] + argv[at + 2:]
            argv = [*argv, "--vpc-draws", "8"]
        code = main([*argv[1:], *(["--quiet"] if argv[1] in ("fit", "diagnose") else [])])
        # A fit that runs to the end but has not converged exits 3 with its folder written: expected
        # of 20 steps, and of the README's SVI quick look; the recipe's own NUTS fit must converge.
        assert code == 0 or (argv[1] == "fit" and code == 3 and (small or "--method" in argv)), (argv, code)
        capsys.readouterr()
        for written in outputs(argv):
            assert (copy / written).is_dir(), written
    assert (copy / "fits/pk_2cmt_example/posterior.nc").is_file()
    assert (copy / "fits/pk_2cmt_example/report/index.html").is_file()
    exec(compile(python[0], "README.md", "exec"), {})
    assert (copy / "fits/pk_python/summary.csv").is_file()
    after = _hashes(copy)
    assert {path: after.get(path) for path in inputs} == inputs  # recipes, data and models untouched


# Slow end to end (measured 50-250 s on the 2-core CI machine); run by `pytest -m slow`.
@pytest.mark.slow
def test_the_worked_example_runs_with_small_settings(tmp_path, monkeypatch, capsys):
    run_worked_example(tmp_path, monkeypatch, capsys, small=True)


@pytest.mark.slow
def test_the_worked_example_runs_as_written(tmp_path, monkeypatch, capsys):
    run_worked_example(tmp_path, monkeypatch, capsys, small=False)
