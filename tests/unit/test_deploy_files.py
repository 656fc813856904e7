"""Static checks of the container files (Dockerfile, docker-compose.yml).

Docker itself is not needed: the files are parsed here and compared with the real Typer app,
so a renamed command or option breaks this test instead of a deployment. Every checker returns
a list of problems; the negative tests feed each one a deliberately broken input to show it
can fail.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

import flows.cli

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
GITIGNORE = REPO / ".gitignore"
SECRETS_RUN_DIR = "/run/secrets/"
# each component's services and the only secrets they may hold: their own credentials
COMPONENT_SECRETS = {
    "flow": {"redis_flow_password", "pg_flow_password"},
    "api": {"redis_api_password"},
    "dashboard": {"redis_dashboard_password", "pg_dashboard_password"},
}
# the one-shot services that prepare the servers hold the secrets they install, and only those
PREPARER_SECRETS = {
    "redis-acl": {"redis_flow_password", "redis_api_password", "redis_dashboard_password"},
    "pg-login-flow": {"postgres_owner_password", "pg_flow_password"},
    "pg-login-dashboard": {"postgres_owner_password", "pg_dashboard_password"},
    "migrate": {"postgres_owner_password"},
    "postgres": {"postgres_owner_password"},
}
FLOW_MEMBER = re.compile(r"^flow-(\d+)$")

BASE_IMAGE = "python:3.11-slim"
IMAGE_USER = "klineflow"  # the final stage's USER
LOOPBACK = "127.0.0.1"
SERVICES_NEEDING_HEALTHCHECK = ("redis", "postgres", "api")
# `${NAME}`, `${NAME:?message}`, `${NAME:-default}`, ... and nothing around it.
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}")
_SECRET_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:(?P<password>[^\s@]*)@")


# --- the command-line app -----------------------------------------------------------------


# Typer 0.29 vendors its own click, so its command objects are not `click.Group` instances;
# a group is recognised by its `commands` mapping instead.
CliCommand = Any


def subcommands(command: CliCommand) -> dict[str, CliCommand] | None:
    """The sub-commands of a group, or None for a plain command."""
    commands = getattr(command, "commands", None)
    return commands if isinstance(commands, dict) else None


def cli_root() -> CliCommand:
    command = typer.main.get_command(flows.cli.app)
    assert subcommands(command), "the Typer app should be a group of commands"
    return command


def cli_problems(argv: Sequence[str], root: CliCommand) -> list[str]:
    """Problems with running `klineflow <argv>`: unknown (sub-)commands or options."""
    words = list(argv)
    if words and words[0] == "klineflow":
        words = words[1:]
    command = root
    path = ["klineflow"]
    while (children := subcommands(command)) is not None:
        if not words or words[0].startswith("-"):
            return [f"`{' '.join(path)}` needs a command, one of {sorted(children)}"]
        name = words.pop(0)
        if name not in children:
            return [f"`{' '.join(path)}` has no command {name!r}; known: {sorted(children)}"]
        command, path = children[name], [*path, name]
    known = {"--help"}
    for param in command.params:
        known.update(param.opts)
        known.update(param.secondary_opts)
    problems = []
    for word in words:
        if word == "--":
            break
        option = word.split("=", 1)[0]
        if option.startswith("--") and option not in known:
            problems.append(f"`{' '.join(path)}` has no option {option}; known: {sorted(known)}")
    return problems


# --- Dockerfile -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with `\\` continuations joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker also drops comment and empty lines inside a continuation
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(part for part in pending if part).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    if pending:
        raise ValueError(f"the Dockerfile ends inside the continuation begun on line {start}")
    return instructions


def exec_form(args: str) -> list[str] | None:
    """The JSON-array ("exec") form of CMD/ENTRYPOINT/HEALTHCHECK CMD, or None for shell form."""
    if not args.startswith("["):
        return None
    value = json.loads(args)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not a JSON array of strings: {args}")
    return value


def _flags_and_rest(args: str) -> tuple[list[str], str]:
    flags = []
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    return flags, rest


def stages(instructions: Sequence[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each begins with FROM)."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if not result:
            raise ValueError(f"{instruction.keyword} on line {instruction.line} precedes FROM")
        result[-1].append(instruction)
    return result


def _last(instructions: Sequence[Instruction], keyword: str) -> Instruction | None:
    found = [i for i in instructions if i.keyword == keyword]
    return found[-1] if found else None


def base_image_problems(instructions: Sequence[Instruction]) -> list[str]:
    problems = []
    froms = [i for i in instructions if i.keyword == "FROM"]
    if not froms:
        return ["the Dockerfile has no FROM"]
    for instruction in froms:
        _, rest = _flags_and_rest(instruction.args)
        image = rest.split()[0] if rest else ""
        if image != BASE_IMAGE:
            problems.append(f"line {instruction.line}: FROM {image!r}, expected {BASE_IMAGE!r}")
    return problems


def entrypoint_problems(instructions: Sequence[Instruction]) -> list[str]:
    entrypoint = _last(instructions, "ENTRYPOINT")
    if entrypoint is None:
        return ["the Dockerfile has no ENTRYPOINT"]
    if exec_form(entrypoint.args) != ["klineflow"]:
        return [f'ENTRYPOINT is {entrypoint.args}, expected ["klineflow"]']
    return []


def dockerfile_cmd_problems(instructions: Sequence[Instruction], root: CliCommand) -> list[str]:
    cmd = _last(instructions, "CMD")
    if cmd is None:
        return ["the Dockerfile has no default CMD"]
    argv = exec_form(cmd.args)
    if argv is None:
        return [f"CMD should be in exec (JSON) form: {cmd.args}"]
    return [f"CMD: {problem}" for problem in cli_problems(argv, root)]


def _cmd_port(instructions: Sequence[Instruction]) -> str | None:
    cmd = _last(instructions, "CMD")
    argv = exec_form(cmd.args) if cmd else None
    if not argv or "--port" not in argv[:-1]:
        return None
    return argv[argv.index("--port") + 1]


def dockerfile_healthcheck_problems(instructions: Sequence[Instruction]) -> list[str]:
    final = stages(instructions)[-1] if instructions else []
    healthcheck = _last(final, "HEALTHCHECK")
    if healthcheck is None:
        return ["the final stage has no HEALTHCHECK"]
    _, rest = _flags_and_rest(healthcheck.args)
    kind, _, command = rest.partition(" ")
    if kind.upper() != "CMD":
        return [f"HEALTHCHECK does not run a command: {healthcheck.args}"]
    text = " ".join(exec_form(command.strip()) or [command])
    problems = []
    port = _cmd_port(instructions)
    if f"http://127.0.0.1:{port}/healthz" not in text:
        problems.append(f"HEALTHCHECK should request http://127.0.0.1:{port}/healthz: {text}")
    if not text.startswith("python"):
        problems.append(f"HEALTHCHECK should use python (slim has no curl): {text}")
    return problems


def dockerfile_runtime_problems(instructions: Sequence[Instruction]) -> list[str]:
    """The final stage runs as a non-root user, exposes the API port, and has no compiler."""
    all_stages = stages(instructions)
    final = all_stages[-1]
    problems = []
    user = _last(final, "USER")
    if user is None or user.args.split(":")[0] in {"root", "0"}:
        problems.append("the final stage must switch to a non-root USER")
    exposed = {
        port.split("/")[0] for i in final if i.keyword == "EXPOSE" for port in i.args.split()
    }
    port = _cmd_port(instructions)
    if port not in exposed:
        problems.append(f"the default API port {port} is not EXPOSEd (exposed: {sorted(exposed)})")
    for instruction in final:
        if instruction.keyword == "RUN" and re.search(r"build-essential|\bgcc\b", instruction.args):
            problems.append(f"line {instruction.line}: compilers belong in the builder stage")
    if len(all_stages) > 1 and not any(
        i.keyword == "COPY" and "--from=" in i.args and "/opt/venv" in i.args for i in final
    ):
        problems.append("the final stage should copy /opt/venv from the builder")
    return problems


def dockerfile_layer_problems(instructions: Sequence[Instruction]) -> list[str]:
    """Project files are copied, and dependencies are installed before the source arrives."""
    copies = [i for i in instructions if i.keyword == "COPY" and "--from=" not in i.args]
    sources = {word.rstrip("/") for i in copies for word in _flags_and_rest(i.args)[1].split()[:-1]}
    problems = [
        f"nothing COPYs {name}"
        for name in ("pyproject.toml", "README.md", "flows", "dashboard", "sql")
        if name not in sources
    ]
    first_source = next(
        (n for n, i in enumerate(instructions) if i in copies and "flows" in i.args), None
    )
    first_install = next(
        (n for n, i in enumerate(instructions) if i.keyword == "RUN" and "pip install" in i.args),
        None,
    )
    if first_install is None:
        problems.append("no RUN installs anything with pip")
    elif first_source is not None and first_source < first_install:
        problems.append("flows/ is copied before the dependencies are installed (poor caching)")
    if not any(
        i.keyword == "RUN" and re.search(r"pip install .*(?:\s\.(?:\s|$))", i.args)
        for i in instructions
    ):
        problems.append("the package itself is never installed (pip install .)")
    return problems


def dockerfile_problems(text: str, root: CliCommand) -> list[str]:
    instructions = parse_dockerfile(text)
    return [
        *base_image_problems(instructions),
        *entrypoint_problems(instructions),
        *dockerfile_cmd_problems(instructions, root),
        *dockerfile_healthcheck_problems(instructions),
        *dockerfile_runtime_problems(instructions),
        *dockerfile_layer_problems(instructions),
    ]


# --- docker-compose.yml ---------------------------------------------------------------------


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict), "the compose file has no services"
    return services


def _argv(value: object) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list), f"not a command: {value!r}"
    return [str(v) for v in value]


def compose_command_problems(compose: dict[str, Any], root: CliCommand) -> list[str]:
    """Each service built from this repository runs a command that exists in the CLI."""
    problems = []
    for name, service in _services(compose).items():
        if "build" not in service:
            continue  # a third-party image: its command is not ours to check
        if "entrypoint" in service and _argv(service["entrypoint"]) != ["klineflow"]:
            problems.append(f"service {name}: entrypoint overridden to {service['entrypoint']!r}")
            continue
        if "command" in service:  # without one, the Dockerfile's CMD applies (checked there)
            problems.extend(
                f"service {name}: {p}" for p in cli_problems(_argv(service["command"]), root)
            )
    return problems


def one_shots(compose: dict[str, Any]) -> set[str]:
    """Services that run once and exit (never restarted; others wait for them to complete)."""
    services = _services(compose)
    awaited = {
        dependency
        for service in services.values()
        if isinstance(service.get("depends_on"), dict)
        for dependency, how in service["depends_on"].items()
        if how.get("condition") == "service_completed_successfully"
    }
    return {n for n in awaited if n in services and services[n].get("restart") == "no"}


def healthcheck_problems(compose: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    services = _services(compose)
    problems.extend(
        f"service {name} is missing"
        for name in SERVICES_NEEDING_HEALTHCHECK
        if name not in services
    )
    once = one_shots(compose)
    for name, service in services.items():
        if ("build" not in service and "image" not in service) or name in once:
            continue
        check = service.get("healthcheck")
        if not isinstance(check, dict) or check.get("disable") or not check.get("test"):
            problems.append(f"service {name} has no healthcheck")
        elif _argv(check["test"])[:1] == ["NONE"]:
            problems.append(f"service {name} disables its healthcheck")
    return problems


def port_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in _services(compose).items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                bound = port.get("host_ip") == LOOPBACK and "published" in port
            else:
                bound = str(port).startswith(f"{LOOPBACK}:")
            if not bound:
                problems.append(f"service {name}: port {port!r} is not bound to {LOOPBACK}")
    return problems


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _secrets_of(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else str(s.get("source")) for s in service.get("secrets", [])}


def secret_problems(compose: dict[str, Any]) -> list[str]:
    """Passwords come only from secret files: a variable that names a password is a `*_FILE`
    path to a secret the service mounts, no URL carries a password, and no value is written
    out (not even as a `${...}` reference to the environment)."""
    problems = []
    declared = set(compose.get("secrets") or {})
    for name, service in _services(compose).items():
        mounted = _secrets_of(service)
        problems.extend(f"service {name}: secret {s!r} is not declared"
                        for s in sorted(mounted - declared))  # fmt: skip
        for key, value in _environment(service).items():
            if not _SECRET_KEY.search(key):
                continue
            secret = value.removeprefix(SECRETS_RUN_DIR)
            if not key.endswith("_FILE") or not value.startswith(SECRETS_RUN_DIR):
                problems.append(f"service {name}: {key} is not a *_FILE path in {SECRETS_RUN_DIR}")
            elif secret not in mounted:
                problems.append(f"service {name}: {key} names {secret!r}, a secret it lacks")
    for text in _strings(compose):
        if _URL_CREDENTIALS.search(text):
            problems.append(f"a URL carries a password: {text}")
    return problems


def secret_file_problems(compose: dict[str, Any], gitignore: str) -> list[str]:
    """Every secret is a file under ./secrets/, a folder git ignores."""
    problems = []
    ignored = {line.strip() for line in gitignore.splitlines()}
    if not ignored & {"secrets/", "/secrets/", "/secrets"}:
        problems.append(".gitignore does not ignore the secrets/ folder")
    for name, secret in (compose.get("secrets") or {}).items():
        path = str((secret or {}).get("file", ""))
        if not path.startswith("./secrets/"):
            problems.append(f"secret {name} is not a file under ./secrets/: {secret!r}")
    return problems


def _url_user(url: str) -> str:
    match = re.match(r"^[a-z]+://([^:@/]+)@", url)
    return match[1] if match else ""


def _component(service: str) -> str | None:
    return (
        "flow" if FLOW_MEMBER.match(service) else service if service in COMPONENT_SECRETS else None
    )


def credential_problems(compose: dict[str, Any]) -> list[str]:
    """Each component mounts exactly its own secrets and names its own users: a flow member
    never sees the dashboard's password, the API no PostgreSQL password at all."""
    problems = []
    services = _services(compose)
    holders: dict[str, set[str]] = {}
    for name, service in services.items():
        for secret in _secrets_of(service):
            holders.setdefault(secret, set()).add(name)
        component = _component(name)
        if component is None:
            continue
        if _secrets_of(service) != COMPONENT_SECRETS[component]:
            problems.append(f"service {name} mounts {sorted(_secrets_of(service))}, expected "
                            f"{sorted(COMPONENT_SECRETS[component])}")  # fmt: skip
        env = _environment(service)
        for server in ("REDIS", "DATABASE"):
            url = env.get(f"KLINEFLOW_{server}_URL")
            if url is None:
                continue
            if _url_user(url) != component:
                problems.append(f"service {name}: KLINEFLOW_{server}_URL logs in as "
                                f"{_url_user(url)!r}, not {component!r}")  # fmt: skip
            secret = env.get(f"KLINEFLOW_{server}_PASSWORD_FILE", "").removeprefix(SECRETS_RUN_DIR)
            if secret not in COMPONENT_SECRETS[component]:
                problems.append(f"service {name}: its {server.lower()} password is not its own")
    owners = {s: c for c, secrets in COMPONENT_SECRETS.items() for s in secrets}
    owners["postgres_owner_password"] = "the owner"
    for secret, names in sorted(holders.items()):
        for holder in sorted(names):
            component = _component(holder)
            own = COMPONENT_SECRETS[component] if component else PREPARER_SECRETS.get(holder, set())
            if secret not in own:
                problems.append(f"service {holder} mounts {secret}, {owners.get(secret)}'s secret")
    return problems


def _option(argv: list[str], option: str) -> str | None:
    return argv[argv.index(option) + 1] if option in argv[:-1] else None


def redis_acl_problems(compose: dict[str, Any]) -> list[str]:
    """Redis starts from the ACL file that `klineflow access redis-acl` writes (the default
    user off, one user per component) after that one-shot completed."""
    services = _services(compose)
    writers = {n: _argv(s.get("command", [])) for n, s in services.items()
               if _argv(s.get("command", []))[:2] == ["access", "redis-acl"]}  # fmt: skip
    if len(writers) != 1:
        return [f"expected one service running `access redis-acl`, found {sorted(writers)}"]
    ((writer, argv),) = writers.items()
    problems = []
    for user in ("flow", "api", "dashboard"):
        given = _option(argv, f"--{user}-password-file")
        if given != f"{SECRETS_RUN_DIR}redis_{user}_password":
            problems.append(f"{writer}: the {user} password file is {given!r}")
    redis_argv = _argv(services.get("redis", {}).get("command", []))
    if _option(redis_argv, "--aclfile") is None:
        problems.append("the redis service starts without --aclfile")
    depends = services.get("redis", {}).get("depends_on") or {}
    if (
        not isinstance(depends, dict)
        or (depends.get(writer) or {}).get("condition") != "service_completed_successfully"
    ):
        problems.append(f"redis does not wait for {writer} to complete")
    return problems


def cluster_problems(compose: dict[str, Any]) -> list[str]:
    """The flow members run `up` as one cluster: member i is --process-id i, and every member
    lists the same --addresses (member i's own host at place i). A member keeps no state of its
    own (it resumes from Redis and PostgreSQL), so it mounts nothing and its filesystem is
    read-only: resizing the cluster or moving a member leaves nothing behind."""
    services = _services(compose)
    members = sorted((int(m[1]), n) for n in services if (m := FLOW_MEMBER.match(n)))
    if len(members) < 2 or [i for i, _ in members] != list(range(len(members))):
        return [f"expected flow-0, flow-1, ...: found {[n for _, n in members]}"]
    problems = []
    addresses = set()
    for i, name in members:
        service = services[name]
        argv = _argv(service.get("command", []))
        if argv[:1] != ["up"] or _option(argv, "--process-id") != str(i):
            problems.append(f"{name} does not run `up --process-id {i}`")
        listed = _option(argv, "--addresses") or ""
        addresses.add(listed)
        hosts = [a.rpartition(":")[0] for a in listed.split(";")]
        if hosts != [n for _, n in members]:
            problems.append(f"{name}: --addresses {listed!r} does not list the members in order")
        if service.get("volumes"):
            problems.append(f"{name} mounts {service['volumes']!r}: a member keeps no state")
        if service.get("read_only") is not True:
            problems.append(f"{name}: its filesystem is not read-only (read_only: true)")
    if len(addresses) != 1:
        problems.append(f"the members list different addresses: {sorted(addresses)}")
    return problems


@dataclass(frozen=True, slots=True)
class Mount:
    source: str
    target: str
    read_only: bool


def named_volumes(service: dict[str, Any]) -> list[Mount]:
    """The named volumes a service mounts (bind mounts and tmpfs left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
            named = volume.get("type", "volume") == "volume" and bool(source)
            read_only = bool(volume.get("read_only"))
        else:
            source, _, rest = str(volume).partition(":")
            target, _, mode = rest.partition(":")
            named = bool(rest) and not source.startswith((".", "/", "~", "$"))
            read_only = "ro" in mode.split(",")
        if named:
            mounts.append(Mount(source, target, read_only))
    return mounts


def volume_problems(compose: dict[str, Any]) -> list[str]:
    """Named volumes used by services are declared; Redis and PostgreSQL keep data in them."""
    declared = set(compose.get("volumes") or {})
    problems = []
    mounts: dict[str, dict[str, str]] = {}
    for name, service in _services(compose).items():
        for mount in named_volumes(service):
            mounts.setdefault(name, {})[mount.target] = mount.source
            if mount.source not in declared:
                problems.append(f"service {name}: volume {mount.source!r} is not declared")
    for server, target in (("redis", "/data"), ("postgres", "/var/lib/postgresql/data")):
        if target not in mounts.get(server, {}):
            problems.append(f"service {server}: {target} is not on a named volume")
    return problems


def compose_problems(compose: dict[str, Any], root: CliCommand) -> list[str]:
    return [
        *compose_command_problems(compose, root),
        *healthcheck_problems(compose),
        *port_problems(compose),
        *secret_problems(compose),
        *secret_file_problems(compose, GITIGNORE.read_text(encoding="utf-8")),
        *credential_problems(compose),
        *redis_acl_problems(compose),
        *cluster_problems(compose),
        *volume_problems(compose),
    ]


def image_user_dirs(instructions: Sequence[Instruction]) -> set[str]:
    """Directories the final stage makes for its user (`install -d -o USER ... DIR ...`)."""
    dirs: set[str] = set()
    for instruction in stages(instructions)[-1]:
        if instruction.keyword != "RUN":
            continue
        for part in re.split(r"&&|;", instruction.args):
            words = shlex.split(part)
            if words[:1] != ["install"] or "-d" not in words:
                continue
            owner = _option(words, "-o") or _option(words, "--owner")
            if owner != IMAGE_USER:
                continue
            taking_value = {"-o", "--owner", "-g", "--group", "-m", "--mode"}
            dirs.update(
                w for n, w in enumerate(words[1:], 1)
                if w.startswith("/") and words[n - 1] not in taking_value
            )  # fmt: skip
    return dirs


def writable_mount_problems(
    compose: dict[str, Any], instructions: Sequence[Instruction]
) -> list[str]:
    """A named volume that a service built from this repository may write is mounted on a
    directory the image makes for its (non-root) user: a new volume takes the owner of its
    mount point, and on any other directory it would belong to root."""
    owned = image_user_dirs(instructions)
    problems = []
    for name, service in _services(compose).items():
        if "build" not in service:
            continue
        for mount in named_volumes(service):
            if not mount.read_only and mount.target not in owned:
                problems.append(f"service {name}: volume {mount.source!r} is mounted on "
                                f"{mount.target}, which the image does not make for "
                                f"{IMAGE_USER}")  # fmt: skip
    return problems


# --- the real files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root() -> CliCommand:
    return cli_root()


@pytest.fixture(scope="module")
def dockerfile_text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture
def broken(compose: dict[str, Any]) -> dict[str, Any]:
    """A private copy of the real compose file for a test to spoil."""
    return copy.deepcopy(compose)


def test_cli_introspection_sees_the_real_commands(root: CliCommand) -> None:
    commands = subcommands(root) or {}
    assert {"replay", "klines", "api", "demo", "services"} <= set(commands)
    assert {"start", "stop", "status"} <= set(subcommands(commands["services"]) or {})
    assert subcommands(commands["api"]) is None
    assert "--port" in {opt for param in commands["api"].params for opt in param.opts}


def test_dockerfile_is_sound(dockerfile_text: str, root: CliCommand) -> None:
    assert dockerfile_problems(dockerfile_text, root) == []


def test_dockerfile_base_image_and_entrypoint(dockerfile_text: str) -> None:
    instructions = parse_dockerfile(dockerfile_text)
    assert [i.args.split()[0] for i in instructions if i.keyword == "FROM"][-1] == BASE_IMAGE
    entrypoint = _last(instructions, "ENTRYPOINT")
    assert entrypoint is not None
    assert exec_form(entrypoint.args) == ["klineflow"]


def test_compose_file_is_sound(compose: dict[str, Any], root: CliCommand) -> None:
    assert compose_problems(compose, root) == []


def test_writable_volumes_are_mounted_on_directories_the_image_user_owns(
    compose: dict[str, Any], dockerfile_text: str
) -> None:
    instructions = parse_dockerfile(dockerfile_text)
    assert image_user_dirs(instructions) == {"/data"}
    assert writable_mount_problems(compose, instructions) == []
    spoiled = parse_dockerfile(dockerfile_text.replace(" /data", " /srv"))
    assert writable_mount_problems(compose, spoiled) == [
        "service redis-acl: volume 'redis-acl' is mounted on /data, "
        "which the image does not make for klineflow"
    ]


def test_writable_volume_elsewhere_is_reported(
    broken: dict[str, Any], dockerfile_text: str
) -> None:
    instructions = parse_dockerfile(dockerfile_text)
    broken["services"]["redis-acl"]["volumes"] = ["redis-acl:/acl"]
    assert len(writable_mount_problems(broken, instructions)) == 1
    broken["services"]["redis-acl"]["volumes"] = ["redis-acl:/acl:ro"]  # read only: no owner
    assert writable_mount_problems(broken, instructions) == []
    broken["services"]["redis-acl"]["volumes"] = [{"type": "volume", "source": "redis-acl",
                                                   "target": "/acl"}]  # fmt: skip
    assert len(writable_mount_problems(broken, instructions)) == 1


def test_deployment_files_name_nothing_the_flow_dropped() -> None:
    # The flow resumes from Redis and PostgreSQL: no snapshot option, volume or shape marker.
    deploy = sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file() and p.suffix != ".pyc")
    files = [COMPOSE_FILE, DOCKERFILE, REPO / "docs" / "DEPLOYMENT.md", *deploy]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for gone in ("--recovery", "--no-recovery", "flow-recovery", "klineflow-cluster.json"):
            assert gone not in text, (path.name, gone)


def test_compose_file_has_no_literal_password_text() -> None:
    # Independent of the YAML structure: anything called a password is a file in /run/secrets/
    # (a *_FILE variable) or a secret's file under ./secrets/.
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    found = re.findall(r"(?im)^[ \t]*-?[ \t]*(\w*password\w*)[ \t]*[:=][ \t]*(\S.*)$", text)
    assert found
    for key, value in found:
        text_value = value.strip().strip("\"'")
        assert key.upper().endswith("_FILE"), (key, value)
        assert text_value.startswith(SECRETS_RUN_DIR), (key, value)
    assert "${" not in text  # nothing is taken from the environment either


def test_pipeline_services_wait_for_healthy_servers_and_their_logins(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    needs = {"api": {"redis"}, "flow-0": {"redis", "postgres"}, "flow-1": {"redis", "postgres"},
             "dashboard": {"redis", "postgres"}}  # fmt: skip
    for name, servers in needs.items():
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict)
        for dependency in servers:
            assert depends[dependency]["condition"] == "service_healthy", (name, dependency)
        user = name.partition("-")[0]
        assert _environment(services[name])["KLINEFLOW_REDIS_URL"] == f"redis://{user}@redis:6379/0"
        if "postgres" in servers:
            login = depends[f"pg-login-{user}"]
            assert login["condition"] == "service_completed_successfully"
            url = _environment(services[name])["KLINEFLOW_DATABASE_URL"]
            assert url == f"postgresql://{user}@postgres:5432/klineflow"
    assert services["pg-login-flow"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_one_shot_services_prepare_the_servers(compose: dict[str, Any]) -> None:
    assert one_shots(compose) == {"redis-acl", "migrate", "pg-login-flow", "pg-login-dashboard"}
    owner = "postgresql://klineflow@postgres:5432/klineflow"  # the owner, only here
    for name in ("migrate", "pg-login-flow", "pg-login-dashboard"):
        assert _environment(_services(compose)[name])["KLINEFLOW_DATABASE_URL"] == owner


def test_the_acl_the_compose_file_generates_switches_the_default_user_off(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    (writer,) = [s for s in _services(compose).values()
                 if _argv(s.get("command", []))[:2] == ["access", "redis-acl"]]  # fmt: skip
    argv = _argv(writer["command"])
    for user in ("flow", "api", "dashboard"):  # the secrets, here made up
        (tmp_path / f"redis_{user}_password").write_text(f"{user}-password-0123456789\n")
    argv = [a.replace(SECRETS_RUN_DIR, f"{tmp_path}/") for a in argv]
    argv[argv.index("--out") + 1] = str(tmp_path / "users.acl")
    result = CliRunner().invoke(flows.cli.app, argv)
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "users.acl").read_text().splitlines()
    assert lines[0].split()[:3] == ["user", "default", "off"]
    assert sorted(line.split()[1] for line in lines[1:]) == ["api", "dashboard", "flow"]
    assert all(line.split()[2] == "on" for line in lines[1:])


# --- the checkers catch what they should ----------------------------------------------------


def test_the_checker_reports_a_nonexistent_command(
    broken: dict[str, Any], root: CliCommand
) -> None:
    broken["services"]["api"]["command"] = "klineflow frobnicate"
    problems = compose_problems(broken, root)
    assert len(problems) == 1
    assert "frobnicate" in problems[0]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["frobnicate"], "no command 'frobnicate'"),
        (["services"], "needs a command"),
        (["services", "--help"], "needs a command"),
        (["services", "restart"], "no command 'restart'"),
        (["api", "--hots", "0.0.0.0"], "no option --hots"),
        ("demo --port 8001 --colour=red", "no option --colour"),
        ("klineflow replay --no-such-flag x", "no option --no-such-flag"),
    ],
)
def test_bad_commands_are_reported(
    broken: dict[str, Any], root: CliCommand, command: object, expected: str
) -> None:
    broken["services"]["api"]["command"] = command
    assert any(expected in p for p in compose_command_problems(broken, root))


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "x.jsonl", "--no-progress", "--fresh"],
        ["services", "status"],
        ["klineflow", "klines", "BTCUSDT", "1m", "--limit=5"],
    ],
)
def test_good_commands_pass(root: CliCommand, argv: list[str]) -> None:
    assert cli_problems(argv, root) == []


def test_the_dropped_recovery_option_is_reported(broken: dict[str, Any], root: CliCommand) -> None:
    broken["services"]["flow-0"]["command"].append("--no-recovery")
    (problem,) = compose_command_problems(broken, root)
    assert problem.startswith("service flow-0: `klineflow up` has no option --no-recovery;")


def test_overridden_entrypoint_is_reported(broken: dict[str, Any], root: CliCommand) -> None:
    broken["services"]["api"]["entrypoint"] = ["sh", "-c"]
    assert any("entrypoint" in p for p in compose_command_problems(broken, root))


@pytest.mark.parametrize("service", SERVICES_NEEDING_HEALTHCHECK)
def test_missing_healthcheck_is_reported(broken: dict[str, Any], service: str) -> None:
    del broken["services"][service]["healthcheck"]
    assert healthcheck_problems(broken) == [f"service {service} has no healthcheck"]


def test_disabled_healthcheck_is_reported(broken: dict[str, Any]) -> None:
    broken["services"]["flow-0"]["healthcheck"] = {"test": ["NONE"]}
    broken["services"]["api"]["healthcheck"] = {"disable": True}
    assert len(healthcheck_problems(broken)) == 2


@pytest.mark.parametrize(
    "port",
    ["8000:8000", "0.0.0.0:8000:8000", "8000", {"target": 8000, "published": 8000}],
)
def test_public_port_is_reported(broken: dict[str, Any], port: object) -> None:
    broken["services"]["api"]["ports"] = [port]
    assert len(port_problems(broken)) == 1


def test_loopback_long_form_port_passes(broken: dict[str, Any]) -> None:
    broken["services"]["api"]["ports"] = [{"target": 8000, "published": 8000, "host_ip": LOOPBACK}]
    assert port_problems(broken) == []


@pytest.mark.parametrize(
    ("service", "environment"),
    [
        ("postgres", {"POSTGRES_PASSWORD": "hunter2"}),
        ("postgres", ["POSTGRES_PASSWORD=hunter2"]),
        ("postgres", {"POSTGRES_PASSWORD": "${KLINEFLOW_PG_PASSWORD}"}),
        ("postgres", {"POSTGRES_PASSWORD_FILE": "/etc/pw"}),
        ("postgres", {"POSTGRES_PASSWORD_FILE": "/run/secrets/pg_flow_password"}),  # not its
        ("flow-0", {"KLINEFLOW_DATABASE_URL": "postgresql://flow:hunter2@postgres:5432/k"}),
        ("flow-0", {"KLINEFLOW_REDIS_URL": "redis://flow:${REDIS_PW}@redis:6379/0"}),
    ],
)
def test_literal_password_is_reported(
    broken: dict[str, Any], service: str, environment: object
) -> None:
    broken["services"][service]["environment"] = environment
    assert len(secret_problems(broken)) == 1


def test_a_secret_outside_the_ignored_folder_is_reported(broken: dict[str, Any]) -> None:
    gitignore = GITIGNORE.read_text(encoding="utf-8")
    assert secret_file_problems(broken, gitignore) == []
    broken["secrets"]["pg_flow_password"] = {"file": "./pg_flow_password.txt"}
    assert len(secret_file_problems(broken, gitignore)) == 1
    problems = secret_file_problems(broken, "*.pyc\n")
    assert problems[0] == ".gitignore does not ignore the secrets/ folder"
    assert len(problems) == 2 and "pg_flow_password is not a file under" in problems[1]


@pytest.mark.parametrize(
    ("service", "change", "expected"),
    [
        ("flow-1", {"secrets": ["redis_flow_password", "pg_dashboard_password"]}, "mounts"),
        ("api", {"secrets": ["redis_api_password", "pg_flow_password"]}, "flow's secret"),
        ("redis", {"secrets": ["pg_dashboard_password"]}, "dashboard's secret"),
        ("dashboard", {"environment": {"KLINEFLOW_REDIS_URL": "redis://flow@redis:6379/0"}},
         "logs in as 'flow'"),
        ("api", {"environment": {"KLINEFLOW_REDIS_URL": "redis://api@redis:6379/0",
                                 "KLINEFLOW_REDIS_PASSWORD_FILE": "/run/secrets/x"}},
         "not its own"),
    ],
)  # fmt: skip
def test_a_component_with_anothers_credentials_is_reported(
    broken: dict[str, Any], service: str, change: dict[str, object], expected: str
) -> None:
    assert credential_problems(broken) == []
    broken["services"][service].update(change)
    assert any(expected in p for p in credential_problems(broken)), credential_problems(broken)


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (lambda c: c["services"]["redis"].update(command=["redis-server"]), "without --aclfile"),
        (lambda c: c["services"]["redis"].pop("depends_on"), "does not wait"),
        (lambda c: c["services"]["redis-acl"]["command"].__setitem__(3, "/run/secrets/x"),
         "flow password file"),
        (lambda c: c["services"].pop("redis-acl"), "expected one service"),
    ],
)  # fmt: skip
def test_redis_without_the_generated_acl_is_reported(
    broken: dict[str, Any], spoil: Callable[[dict[str, Any]], object], expected: str
) -> None:
    assert redis_acl_problems(broken) == []
    spoil(broken)
    assert any(expected in p for p in redis_acl_problems(broken)), redis_acl_problems(broken)


def _set_option(command: list[str], option: str, value: str) -> None:
    command[command.index(option) + 1] = value


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (lambda s: _set_option(s["flow-1"]["command"], "--addresses", "flow-1:2101;flow-0:2101"),
         "different addresses"),
        (lambda s: [_set_option(s[f"flow-{i}"]["command"], "--addresses", "a:1;b:1")
                    for i in (0, 1)], "in order"),
        (lambda s: _set_option(s["flow-1"]["command"], "--process-id", "0"), "--process-id 1"),
        (lambda s: s["flow-1"].update(volumes=["flow-state:/data"]), "keeps no state"),
        (lambda s: s["flow-0"].update(volumes=["./state:/home/klineflow"]), "keeps no state"),
        (lambda s: s["flow-0"].pop("read_only"), "not read-only"),
        (lambda s: s["flow-1"].update(read_only=False), "not read-only"),
        (lambda s: s.pop("flow-1"), "expected flow-0, flow-1"),
    ],
)  # fmt: skip
def test_flow_members_that_disagree_are_reported(
    broken: dict[str, Any], spoil: Callable[[dict[str, Any]], object], expected: str
) -> None:
    assert cluster_problems(broken) == []
    spoil(broken["services"])
    assert any(expected in p for p in cluster_problems(broken)), cluster_problems(broken)


def test_a_one_shot_needs_no_healthcheck_but_a_server_does(broken: dict[str, Any]) -> None:
    assert "healthcheck" not in broken["services"]["migrate"]
    assert healthcheck_problems(broken) == []
    broken["services"]["migrate"]["restart"] = "unless-stopped"  # now a long-running service
    assert healthcheck_problems(broken) == ["service migrate has no healthcheck"]


def test_undeclared_volume_is_reported(broken: dict[str, Any]) -> None:
    broken["services"]["redis"]["volumes"] = ["scratch:/data"]
    assert volume_problems(broken) == ["service redis: volume 'scratch' is not declared"]


def test_bind_mount_instead_of_named_volume_is_reported(broken: dict[str, Any]) -> None:
    broken["services"]["postgres"]["volumes"] = ["./pgdata:/var/lib/postgresql/data"]
    assert volume_problems(broken) == [
        "service postgres: /var/lib/postgresql/data is not on a named volume"
    ]


def test_dockerfile_continuations_and_comments_are_joined() -> None:
    text = (
        "FROM python:3.11-slim\n"
        "# note\n"
        "RUN a \\\n"
        "    # inner comment\n"
        "    && b \\\n"
        "    && c\n"
        'CMD ["x"]\n'
    )
    assert parse_dockerfile(text) == [
        Instruction("FROM", BASE_IMAGE, 1),
        Instruction("RUN", "a && b && c", 3),
        Instruction("CMD", '["x"]', 7),
    ]
    with pytest.raises(ValueError, match="continuation"):
        parse_dockerfile("FROM python:3.11-slim\nRUN a \\\n")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "FROM python:3.11-slim AS runtime",
            "FROM python:3.12-slim AS runtime",
            "expected 'python:3.11-slim'",
        ),
        ('ENTRYPOINT ["klineflow"]', 'ENTRYPOINT ["python", "-m", "flows"]', "ENTRYPOINT"),
        ('CMD ["api",', 'CMD ["frobnicate",', "no command 'frobnicate'"),
        ('"--host", "0.0.0.0"', '"--bind", "0.0.0.0"', "no option --bind"),
        ("HEALTHCHECK", "# HEALTHCHECK", "no HEALTHCHECK"),
        ("/healthz", "/health", "should request"),
        ("USER klineflow", "USER root", "non-root USER"),
        ("EXPOSE 8000", "EXPOSE 9000", "not EXPOSEd"),
        ("sql/ sql/", "sq1/ sq1/", "nothing COPYs sql"),
        ("RUN pip install --no-deps .", "RUN pip install --no-deps flows", "never installed"),
    ],
)
def test_dockerfile_mistakes_are_reported(
    dockerfile_text: str, root: CliCommand, old: str, new: str, expected: str
) -> None:
    assert old in dockerfile_text, f"the fixture text {old!r} no longer appears in the Dockerfile"
    problems = dockerfile_problems(dockerfile_text.replace(old, new), root)
    assert any(expected in p for p in problems), problems


def test_dockerfile_compiler_in_runtime_stage_is_reported(
    dockerfile_text: str, root: CliCommand
) -> None:
    spoiled = dockerfile_text.replace(
        "USER klineflow", "RUN apt-get update && apt-get install -y build-essential\nUSER klineflow"
    )
    assert any("builder stage" in p for p in dockerfile_problems(spoiled, root))


def test_dockerfile_source_before_dependencies_is_reported(
    dockerfile_text: str, root: CliCommand
) -> None:
    spoiled = dockerfile_text.replace(
        "COPY pyproject.toml ./", "COPY pyproject.toml ./\nCOPY flows/ flows/", 1
    )
    assert any("poor caching" in p for p in dockerfile_problems(spoiled, root))
