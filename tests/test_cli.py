"""The `flowprep` command as a user meets it: every mistake a user can make is one line on stderr that
says what to do, with exit status 2; a bug is one line naming the log that holds its traceback; help
shows the defaults that mean something, and every example printed by --help parses.

One real build (two GRID clips, DIS flow) serves the tests that need a shard folder. It runs as a
first build from a clone's parent would: from a working directory holding an empty ``flowprep/``
folder, with the package found through an import hook (as an editable install finds it), not through
the path; Ray's workers put that working directory first on their import path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowprep import cli
from flowprep.builder.report import BuildReport
from flowprep.errors import EXIT_FATAL, EXIT_OK

REPO = Path(__file__).resolve().parents[1]

# Starts `flowprep` as an editable install's console script does: the package comes from an import
# hook placed after the path search, nothing of the repository is on sys.path, and the working
# directory is not on it either (a console script's sys.path[0] is its own folder).
EDITABLE_LAUNCH = r"""
import importlib.abc, importlib.machinery, os, sys
repo = sys.argv[1]
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) not in (repo, os.getcwd())]

class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        return importlib.machinery.PathFinder.find_spec(name, [repo]) if name == "flowprep" else None

sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder) + 1, Hook())
from flowprep.cli import main
sys.argv = ["flowprep", *sys.argv[2:]]
sys.exit(main())
"""


def _env_without_repo() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def _flowprep(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`flowprep ARGS` in a process of its own (the repository's package first on its path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "flowprep.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO, env=env)


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def built(grid_dir, tmp_path_factory) -> Path:
    """Two GRID clips built from a folder holding an empty ``flowprep/`` (a clone's parent)."""
    home = tmp_path_factory.mktemp("clone_parent")
    (home / "flowprep").mkdir()
    out = home / "shards"
    proc = subprocess.run(
        [sys.executable, "-c", EDITABLE_LAUNCH, str(REPO), "build", "--src", str(grid_dir), "--out", str(out),
         "--flow", "dis", "--limit", "2", "--workers", "2", "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=home, env=_env_without_repo(),
    )
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    assert "flowprep verify --shards" in proc.stderr  # the summary says what to run next
    return out


# ---- the build from a clone's parent ---------------------------------------------------------------
def test_a_build_from_a_folder_holding_an_empty_flowprep_folder_succeeds(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert sum(s["clips"] for s in manifest["shards"]) == 2
    assert not (built / "failures.jsonl").exists() or not (built / "failures.jsonl").read_text().strip()


# ---- bench read on the build (the command's path through cli/bench.py to dataset/bench.py) --------
def test_bench_read_measures_the_folder(built, capsys):
    assert cli.main(["bench", "read", "--shards", str(built), "--clips", "4", "--workers", "0", "--json"]) == EXIT_OK
    figures = json.loads(capsys.readouterr().out)
    assert figures["clips_read"] == 4 and figures["clips_in_split"] == 2 and figures["workers"] == 0
    rates = [figures[f"{how}_{mode}_clips_per_s"] for how in ("single", "loader") for mode in ("plain", "transforms")]
    assert all(rate > 0 for rate in rates), figures
    assert cli.main(["bench", "read", str(built), "--clips", "2", "--workers", "0"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("2 random clips of 2:\n  plain ")


# ---- messages: one line, exit 2, what to do ------------------------------------------------------
def test_a_misspelt_command_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["biuld", "--src", "x", "--out", "y"])
    assert exit_.value.code == EXIT_FATAL
    assert "did you mean 'build'?" in capsys.readouterr().err


def test_a_misspelt_choice_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["build", "--src", "x", "--out", "y", "--flow", "diss"])
    assert exit_.value.code == EXIT_FATAL
    assert "did you mean 'dis'?" in capsys.readouterr().err


def test_out_an_existing_file(grid_dir, tmp_path):
    target = tmp_path / "shards"
    target.write_text("not a folder")
    proc = _flowprep("build", "--src", str(grid_dir), "--out", str(target), "--flow", "dis")
    assert proc.returncode == EXIT_FATAL
    line = _one_line(proc.stderr)
    assert str(target) in line and "is a file: give a folder" in line


def test_out_below_a_file(grid_dir, tmp_path):
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "shards"
    proc = _flowprep("build", "--src", str(grid_dir), "--out", str(target), "--flow", "dis")
    assert proc.returncode == EXIT_FATAL
    line = _one_line(proc.stderr)
    assert str(target) in line and "part of the path is a file, not a folder" in line


def test_out_not_writable(grid_dir, tmp_path):
    if os.geteuid() == 0:
        target = Path("/sys/flowprep-shards")  # not even root may make a folder here
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        target = locked / "shards"
    proc = _flowprep("build", "--src", str(grid_dir), "--out", str(target), "--flow", "dis")
    assert proc.returncode == EXIT_FATAL
    line = _one_line(proc.stderr)
    # EACCES/EPERM, or EROFS where /sys is mounted read-only
    assert str(target) in line and ("or fix its permissions" in line or "read-only: pick another location" in line)


def test_stats_on_a_folder_with_a_missing_shard(built, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(built, broken)
    shard = next(broken.glob("*.h5"))
    shard.unlink()
    proc = _flowprep("stats", "--shards", str(broken))
    assert proc.returncode == EXIT_FATAL
    line = _one_line(proc.stderr)
    assert f"{shard}: No such file or directory" in line and "flowprep verify --shards DIR" in line


def _mount_full_tmpfs(where: Path) -> bool:
    """A 12 KiB tmpfs at ``where``, filled up; False where this process may not mount (not root)."""
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        return False
    try:
        with open(where / "filler", "wb") as fh:
            fh.write(b"\0" * 64 * 1024)
    except OSError:
        pass  # full: what the test wants
    return True


def test_a_full_disk_under_out(grid_dir, tmp_path, monkeypatch, capsys):
    """--out on a full filesystem: one line naming the folder, exit 2. On a real full tmpfs where the
    test may mount one; otherwise the manifest's write fails with an injected ENOSPC."""
    disk = tmp_path / "disk"
    out = disk / "out"
    if _mount_full_tmpfs(disk):
        try:
            proc = _flowprep("build", "--src", str(grid_dir), "--out", str(out), "--flow", "dis", "--limit", "1",
                             "--workers", "1", "--no-progress", timeout=300)
        finally:
            subprocess.run(["umount", str(disk)], check=True)
        status, stderr = proc.returncode, proc.stderr
    else:
        import errno

        from flowprep.shards import manifest

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(manifest, "atomic_write_text", full)
        status = cli.main(["build", "--src", str(grid_dir), "--out", str(out), "--flow", "dis", "--limit", "1",
                           "--workers", "1", "--no-progress"])
        stderr = capsys.readouterr().err
    assert status == EXIT_FATAL
    line = _one_line(stderr)
    assert str(out) in line and "No space left on device: free some space or pick another location" in line


def test_disk_full_says_what_to_do():
    """A real ENOSPC: /dev/full refuses every write (a failed flush names no path)."""
    with pytest.raises(OSError) as caught:
        with open("/dev/full", "w") as full:
            full.write("x")
    assert cli.os_error_message(caught.value).startswith("No space left on device: free some space or pick another "
                                                         "location, then rerun the same command")


@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "table"])
def test_stats_into_a_closed_pipe(built, form):
    """`flowprep stats --json | head`: the reader left before the output came; no traceback, status 0
    (a short table, flushed only at exit, included)."""
    read, write = os.pipe()
    os.close(read)  # every write into the pipe now fails with EPIPE
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run([sys.executable, "-m", "flowprep.cli", "stats", *form, "--shards", str(built)],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120, cwd=REPO, env=env)
    finally:
        os.close(write)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_a_bug_is_one_line_naming_its_traceback_log(monkeypatch, tmp_path, capsys):
    def broken(args):
        return {}["no such key"]

    monkeypatch.setattr(cli.shards, "run_stats", broken)  # a command with a bug in it
    monkeypatch.setenv(cli.LOG_DIR_ENV, str(tmp_path))
    assert cli.main(["stats", "--shards", str(tmp_path)]) == EXIT_FATAL
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("flowprep: internal error (KeyError: 'no such key'); this is a bug")
    log = Path(re.search(r"the traceback is in (\S+) ", line).group(1))
    assert log.parent == tmp_path / "flowprep"
    assert "Traceback" in log.read_text() and "KeyError" in log.read_text()

    assert cli.main(["--debug", "stats", "--shards", str(tmp_path)]) == EXIT_FATAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err


# ---- one form for the shard folder ------------------------------------------------------------
def test_shards_option_and_positional_folder_agree(built):
    by_option, by_position = _flowprep("stats", "--json", "--shards", str(built)), _flowprep("stats", "--json", str(built))
    assert by_option.returncode == by_position.returncode == EXIT_OK, by_option.stderr + by_position.stderr
    assert json.loads(by_option.stdout) == json.loads(by_position.stdout)


def test_two_different_folders_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify", "--shards", str(tmp_path / "a"), str(tmp_path / "b")])
    assert exit_.value.code == EXIT_FATAL
    assert "two shard folders given" in capsys.readouterr().err


def test_a_missing_folder_argument_says_how_to_give_it(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["stats"])
    assert exit_.value.code == EXIT_FATAL
    assert "give the shard folder: --shards DIR" in capsys.readouterr().err


# ---- help --------------------------------------------------------------------------------------
def _help(command: str) -> str:
    return dict(cli.walk(cli.build_parser()))[command].format_help()


def _squeezed(text: str) -> str:
    return " ".join(text.split())


def test_defaults_of_zero_are_shown_and_none_or_off_are_not():
    train = _squeezed(_help("flowprep train"))
    assert "initialisation, order and augmentation (default: 0)" in train
    assert "cross-entropy label smoothing (default: 0.0)" in train
    assert "(default: None)" not in train and "(default: False)" not in train
    assert "(default: 10)" in _squeezed(_help("flowprep preview"))  # --columns


def test_eval_device_has_help():
    assert "--device DEVICE auto (CUDA when there is one), cpu, cuda or cuda:N (default: auto)" in \
        _squeezed(_help("flowprep eval"))


def _example_lines(text: str) -> list[str]:
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.strip().startswith("flowprep ")]


def test_every_example_printed_by_help_parses():
    examples = []
    for _, parser in cli.walk(cli.build_parser()):
        examples += _example_lines(parser.format_help())
    examples += _example_lines("\n".join(BuildReport(out_dir="/data/my shards").next_steps()))
    assert len(examples) >= 14  # top level, train, and the build summary's next steps
    for example in examples:
        words = shlex.split(example)[1:]
        try:
            args = cli.build_parser().parse_args(words)
        except SystemExit as exc:
            raise AssertionError(f"`{example}` does not parse (exit {exc.code})") from None
        assert callable(getattr(args, "func", None)), example


# ---- structure: the command line is the top of the package, and a package with no loop ------------
def _imports(path: Path) -> set[str]:
    """Every flowprep module a file imports, at any depth (function-level imports count)."""
    import ast

    package = list(path.relative_to(REPO).with_suffix("").parts)
    package = package[:-1]  # the package the file's relative imports start from
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            found |= {stem} | {f"{stem}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name.startswith("flowprep")}


def test_no_module_below_the_command_line_imports_it():
    below = [p for p in (REPO / "flowprep").rglob("*.py") if "cli" not in p.relative_to(REPO).parts
             and p.name != "__main__.py"]
    assert len(below) > 40
    for path in below:
        assert not {n for n in _imports(path) if n == "flowprep.cli" or n.startswith("flowprep.cli.")}, path


def test_command_modules_register_through_one_hook_and_never_import_the_entry_point():
    for module in cli.COMMANDS:
        assert callable(module.register), module
        path = Path(module.__file__)
        assert not {n for n in _imports(path) if n == "flowprep.cli"} - {"flowprep.cli.forms"}, path
        assert "_SubParsersAction" not in path.read_text() and "._actions" not in path.read_text(), path
