"""The migration spec: a TOML file, validated with pydantic, that says what to migrate and how."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.central_spec import Central, Target
from domain.cis_rules import Cis
from domain.errors import NotForThisTarget, SpecError, WaveError
from domain.notify_spec import Notify
from domain.permission_set_spec import LeastPrivilege, PermissionSets
from domain.prefect_spec import PrefectSettings
from domain.workload_spec import Workload

# An account id is 12 digits; an OU id is ou-<root 4-32>-<8-32> (Organizations API reference,
# OrganizationalUnit.Id); "*" means every account.
_ACCOUNT_OR_OU = re.compile(r"^(\*|\d{12}|ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# IAM role names: [\w+=,.@-]{1,64} (IAM API reference, CreateRole).
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")

# Defaults per API family, requests per second. sso-admin and identitystore share ~20/s each
# (IAM Identity Center quotas); IAM publishes no rate, so we stay well under what throttles.
DEFAULT_RATE_LIMITS: dict[str, float] = {
    "iam": 10.0,
    "sts": 20.0,
    "organizations": 5.0,
    "sso-admin": 20.0,
    "identitystore": 20.0,
    # LookupEvents: 2 requests/s per account and region (CloudTrail API reference).
    "cloudtrail": 2.0,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Strict):
    include_accounts: list[str] = Field(default_factory=lambda: ["*"])
    exclude_accounts: list[str] = Field(default_factory=list)

    @field_validator("include_accounts", "exclude_accounts")
    @classmethod
    def _account_or_ou(cls, values: list[str]) -> list[str]:
        return _selectors(values)


def _selectors(values: list[str]) -> list[str]:
    for value in values:
        if not _ACCOUNT_OR_OU.match(value):
            raise ValueError(
                f"{value!r} is not a 12-digit account id, an OU id (ou-xxxx-xxxxxxxx), "
                "a root id (r-xxxx) or '*'"
            )
    return values


class Decommission(_Strict):
    inactive_days: Annotated[int, Field(ge=1, le=3650)] = 90
    bake_days: Annotated[int, Field(ge=0, le=365)] = 14
    # Regions whose resource policies the delete stage reads for references to a user;
    # default (empty): every region enabled in each in-scope account.
    reference_regions: list[str] = Field(default_factory=list)

    @field_validator("reference_regions")
    @classmethod
    def _reference_regions(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _REGION.match(value):
                raise ValueError(f"{value!r} is not an AWS region name such as 'us-east-1'")
        return values

    # The blast-radius cap (domain.deletion): a delete run stops before its first deletion
    # when it would delete more IAM users than this in all, or in any one account. Deleting
    # can't be undone, so a larger run is a reviewed change to the spec (or smaller waves).
    max_deletes_per_run: Annotated[int, Field(ge=1, le=100_000)] = 50
    max_deletes_per_account: Annotated[int, Field(ge=1, le=100_000)] = 20


class Inventory(_Strict):
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8  # accounts at once
    # Per-user reads (keys, MFA, SSH keys, ...) at once within one account; the account's IAM
    # rate limit ([aws] rate_limits) still caps its calls per second.
    user_concurrency: Annotated[int, Field(ge=1, le=16)] = 4


class Aws(_Strict):
    """How we talk to AWS: retries and one rate limit per API family."""

    max_attempts: Annotated[int, Field(ge=1, le=20)] = 8
    rate_limits: dict[str, Annotated[float, Field(gt=0, le=1000)]] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_LIMITS)
    )
    # Seconds from an asynchronous Identity Center request (assignment, provisioning) to its
    # first status poll. Default: the operation's typical completion time (5 s), so most
    # requests take one poll; an endpoint that completes at once (a sandbox) can say so.
    first_status_poll_s: Annotated[float, Field(ge=0, le=60)] | None = None
    # The member-account role `iamc restore` assumes: the only one whose policy may re-create
    # users (`iamc policy restore`). Default: member_role, whose sessions then carry a session
    # policy denying restore's writes to every other command.
    restore_role: str | None = None

    @field_validator("restore_role")
    @classmethod
    def _restore_role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_NAME.match(value):
            raise ValueError("expected an IAM role name: 1-64 characters of [A-Za-z0-9+=,.@_-]")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _known_families(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DEFAULT_RATE_LIMITS))
        if unknown:
            raise ValueError(
                f"unknown API family {', '.join(unknown)}; expected some of "
                f"{', '.join(sorted(DEFAULT_RATE_LIMITS))}"
            )
        return {**DEFAULT_RATE_LIMITS, **value}


class Scan(_Strict):
    """Runbook step 4, the hard-coded key scan: which code paths, and the AWS side or not."""

    paths: list[str] = Field(default_factory=list)  # directories or git repos; relative to spec
    aws: bool = True  # also every in-scope member account's configuration (Lambda, SSM, ...)
    regions: list[str] = Field(default_factory=list)  # AWS-side regions; default: the spec's
    history: bool = True  # the whole git history of paths that are repositories
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4  # accounts scanned at once

    @field_validator("paths")
    @classmethod
    def _paths(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip():
                raise ValueError("an empty path would scan nothing; remove it")
        if len(set(values)) != len(values):
            raise ValueError("a path is listed twice")
        return values

    @field_validator("regions")
    @classmethod
    def _regions(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _REGION.match(value):
                raise ValueError(f"{value!r} is not an AWS region name such as 'us-east-1'")
        return values


@dataclass(frozen=True)
class ScanPath:
    """A ``[scan] paths`` entry: as written (its label in reports) and resolved."""

    label: str
    path: Path
    problem: str | None = None  # one line naming the file and key, when it can't be scanned


def scan_paths_of(spec: MigrationSpec, spec_path: str | Path) -> list[ScanPath]:
    """The spec's scan paths resolved against the spec's directory, each with its problem.

    A missing path is not a spec error: the scan of the rest still runs and lists it as
    skipped, with this one line.
    """
    base = Path(spec_path).parent
    found = []
    for index, label in enumerate(spec.scan.paths):
        path = (base / label).resolve()
        problem = None
        if not path.exists():
            problem = (
                f"{spec_path}: scan.paths[{index}]: {label!r} does not exist (looked for {path}): "
                "skipped; the rest of the scan goes on"
            )
        found.append(ScanPath(label, path, problem))
    return found


# Identity-mapping rules (see domain/mapping.py): "override" (the overrides CSV), "tag:<key>" (an
# IAM user tag), "username" (the IAM user name), "email-localpart" (the part of an identity
# email before "@"), or a template containing "username" such as "username@example.com".
USER_RULE_KINDS = ("override", "tag:<key>", "username", "email-localpart", "<template>")
GROUP_RULE_KINDS = ("override", "name")
# An IAM tag key: 1-128 characters of letters, digits, spaces and _.:/=+-@ (IAM API, Tag).
_TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")


def user_rule_problem(rule: str) -> str | None:
    """Why ``rule`` is not a user-mapping rule, or None when it is one."""
    if rule in ("override", "username", "email-localpart"):
        return None
    if rule.startswith("tag:"):
        if not _TAG_KEY.match(rule[len("tag:") :]):
            return f"{rule!r}: expected 'tag:<key>' with an IAM tag key, e.g. 'tag:email'"
        return None
    if "username" in rule and not any(c.isspace() for c in rule):
        return None
    return (
        f"unknown rule {rule!r}; expected one of override, tag:<key>, username, "
        "email-localpart, or a template containing 'username' such as 'username@example.com'"
    )


class Mapping(_Strict):
    """How IAM users and groups are matched to identity-store users and groups."""

    rules: list[str] = Field(
        default_factory=lambda: ["override", "tag:email", "username", "email-localpart"]
    )
    overrides: str | None = None  # CSV account_id,iam_user,idp_user; relative to the spec
    group_rules: list[str] = Field(default_factory=lambda: ["override", "name"])
    group_overrides: str | None = None  # CSV account_id,iam_group,idp_group
    # Pin the Identity Center instance when more than one is visible (account instances).
    identity_store_id: str | None = None
    instance_arn: str | None = None

    @field_validator("rules")
    @classmethod
    def _user_rules(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("at least one rule is needed")
        problems = [p for p in map(user_rule_problem, values) if p]
        if problems:
            raise ValueError("; ".join(problems))
        if len(set(values)) != len(values):
            raise ValueError("a rule is listed twice")
        return values

    @field_validator("group_rules")
    @classmethod
    def _group_rules(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("at least one rule is needed")
        unknown = [v for v in values if v not in GROUP_RULE_KINDS]
        if unknown:
            raise ValueError(
                f"unknown rule {', '.join(map(repr, unknown))}; expected override or name"
            )
        if len(set(values)) != len(values):
            raise ValueError("a rule is listed twice")
        return values

    @model_validator(mode="after")
    def _overrides_need_their_rule(self) -> Mapping:
        # An overrides file the rules never consult would be silently ignored.
        if self.overrides and "override" not in self.rules:
            raise ValueError("overrides is set but 'override' is not in mapping.rules")
        if self.group_overrides and "override" not in self.group_rules:
            raise ValueError("group_overrides is set but 'override' is not in mapping.group_rules")
        return self


class Wave(_Strict):
    """One wave of accounts: planned, approved, applied and rolled back on its own.

    Waves share the migration's state: inventory and mapping cover the whole ``[scope]``, and
    permission sets are the organization's, adopted by every wave that needs the same access.
    """

    name: str
    include_accounts: list[str]
    exclude_accounts: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _wave_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "expected 1-63 letters, digits, '.', '_' or '-', starting alphanumeric"
            )
        return value

    @field_validator("include_accounts")
    @classmethod
    def _some_accounts(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("a wave needs at least one account or OU id")
        if "*" in values:
            raise ValueError("'*' would put every account in one wave; list account or OU ids")
        return values

    @field_validator("include_accounts", "exclude_accounts")
    @classmethod
    def _wave_account_or_ou(cls, values: list[str]) -> list[str]:
        return _selectors(values)


class MigrationSpec(_Strict):
    """One migration of an organization, named so its state can be found again; its accounts
    are migrated at once or in ``waves``."""

    name: str
    region: str = "us-east-1"
    member_role: str = "OrganizationAccountAccessRole"
    state: str = "sqlite:///.iamc/state.db"
    protected_users: list[str] = Field(default_factory=list)
    protected_tag: str = "iamc:protected"
    scope: Scope = Field(default_factory=Scope)
    decommission: Decommission = Field(default_factory=Decommission)
    inventory: Inventory = Field(default_factory=Inventory)
    aws: Aws = Field(default_factory=Aws)
    mapping: Mapping = Field(default_factory=Mapping)
    scan: Scan = Field(default_factory=Scan)
    permission_sets: PermissionSets = Field(default_factory=PermissionSets)
    least_privilege: LeastPrivilege = Field(default_factory=LeastPrivilege)
    waves: list[Wave] = Field(default_factory=list)
    cis: Cis = Field(default_factory=Cis)
    workloads: list[Workload] = Field(default_factory=list)  # [[workloads]]
    # Where people's access lands: Identity Center, or roles trusted by one identity account
    # (``domain.central_spec``; ``[central]`` is required with ``central-roles``).
    target: Target = "identity-center"
    central: Central | None = None

    @model_validator(mode="after")
    def _target_has_its_account(self) -> MigrationSpec:
        if self.target == "central-roles" and self.central is None:
            raise ValueError(
                'target = "central-roles" needs a [central] table naming the identity account '
                '(account = "123456789012")'
            )
        if self.target == "identity-center" and self.central is not None:
            raise ValueError('[central] is only read with target = "central-roles"')
        return self

    @property
    def central_account(self) -> str | None:
        """The identity account of the ``central-roles`` target; None for Identity Center."""
        return self.central.account if self.target == "central-roles" and self.central else None

    def identity_center_only(self, command: str, what: str) -> None:
        """Refuse a command that reads Identity Center only when the target is central-roles.

        Args:
            command: The command as typed (``iamc drift``).
            what: What the central-roles target lacks (``drift check``).

        Raises:
            NotForThisTarget: The target is ``central-roles``.
        """
        if self.target == "central-roles":
            raise NotForThisTarget(
                f"{command} reads Identity Center only; the central-roles target has no {what} yet"
            )

    @field_validator("waves")
    @classmethod
    def _distinct_waves(cls, waves: list[Wave]) -> list[Wave]:
        seen: dict[str, str] = {}
        names: set[str] = set()
        for wave in waves:
            if wave.name in names:
                raise ValueError(f"wave name {wave.name!r} is used twice; wave names are unique")
            names.add(wave.name)
            for selector in wave.include_accounts:
                if selector in seen:
                    raise ValueError(
                        f"{selector} is in wave {seen[selector]!r} and in wave {wave.name!r}; "
                        "an account belongs to one wave"
                    )
                seen[selector] = wave.name
        return waves

    def wave(self, name: str | None) -> Wave | None:
        """The wave called ``name``; None for a spec without waves (its scope is one wave).

        Raises:
            WaveError: the spec has waves and ``name`` is not one of them, or it has none and
                a wave was named.
        """
        known = ", ".join(w.name for w in self.waves)
        if not self.waves:
            if name is None:
                return None
            raise WaveError(
                f"--wave {name}: migration {self.name!r} defines no [[waves]]; leave --wave out "
                "(its [scope] is one wave)"
            )
        if name is None:
            raise WaveError(
                f"migration {self.name!r} is planned in waves: name one with --wave ({known})"
            )
        for wave in self.waves:
            if wave.name == name:
                return wave
        raise WaveError(f"--wave {name}: no such wave in migration {self.name!r} ({known})")

    notify: Notify = Field(default_factory=Notify)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)

    @property
    def restore_role(self) -> str:
        """The role `iamc restore` assumes in members: [aws] restore_role, or member_role."""
        return self.aws.restore_role or self.member_role

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "expected 1-63 letters, digits, '.', '_' or '-', starting alphanumeric"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError("expected an AWS region name such as 'us-east-1'")
        return value

    @field_validator("member_role")
    @classmethod
    def _role(cls, value: str) -> str:
        if not _ROLE_NAME.match(value):
            raise ValueError("expected an IAM role name: 1-64 characters of [A-Za-z0-9+=,.@_-]")
        return value

    @field_validator("state")
    @classmethod
    def _state_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError(
                "expected a SQLAlchemy URL such as 'sqlite:///.iamc/state.db' or "
                "'postgresql+psycopg://user@host/db'"
            )
        return value

    @field_validator("protected_users")
    @classmethod
    def _globs(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip():
                raise ValueError("an empty glob would protect nothing; remove it")
        return values


def _key_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _explain(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    received = error.get("input")
    if kind not in ("missing",) and not isinstance(received, dict | list):
        message += f" (got {received!r})"
    return message


_TABLE_LINE = re.compile(r"^\s*(\[\[?)([^\[\]]+)\]")
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_\-\"' .]+?)\s*=")


def _dotted(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in text.split(".")]


def key_lines(text: str) -> dict[str, int]:
    """Where a TOML text defines each key and table: dotted key -> line number (1-based).

    Arrays of tables are indexed as pydantic names them (``waves.0.name``). A line scan, not
    a TOML parser: a line inside a multi-line string or array may be taken for a key, so the
    first definition wins and an error names a line only as a pointer next to the key.
    """
    found: dict[str, int] = {}
    table: list[str] = []
    arrays: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if header := _TABLE_LINE.match(line):
            table = _dotted(header.group(2))
            if header.group(1) == "[[":
                name = ".".join(table)
                arrays[name] = arrays.get(name, -1) + 1
                table.append(str(arrays[name]))
            found.setdefault(".".join(table), number)
        elif key := _KEY_LINE.match(line):
            found.setdefault(".".join([*table, *_dotted(key.group(1))]), number)
    return found


def _line_of(key: str, lines: dict[str, int]) -> int | None:
    """The line of ``key``, or of the nearest enclosing key or table the text defines."""
    parts = key.split(".")
    while parts:
        if (line := lines.get(".".join(parts))) is not None:
            return line
        parts.pop()
    return None


def parse_spec(data: dict[str, Any], path: str = "<spec>", text: str = "") -> MigrationSpec:
    """Validate a parsed TOML document.

    Args:
        data: The parsed document.
        path: The file, for the error.
        text: The document's text: the error then names the line of each invalid key.

    Raises:
        SpecError: naming each invalid key with what was expected.
    """
    try:
        spec = MigrationSpec.model_validate(data)
    except ValidationError as err:
        problems = [(_key_of(e["loc"]), _explain(e)) for e in err.errors()]
        defined = key_lines(text) if text else {}
        lines = {k: line for k, _ in problems if k and (line := _line_of(k, defined))}
        raise SpecError(path, problems, lines) from None
    return spec


# A spec is parsed and validated once per process: the CLI checks it as it parses ``-c``, the
# command's migration opens it, and only a changed file (by its text) is validated again.
_LOADED: dict[tuple[str, str], MigrationSpec] = {}


def load_spec(path: str | Path) -> MigrationSpec:
    """Read and validate a migration spec.

    A relative SQLite path in ``state``, and the mapping's override CSVs, are resolved against
    the spec's own directory, so the same spec finds the same files whatever directory the
    command runs from.

    Raises:
        SpecError: the file is missing, not TOML, or has invalid keys.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), [("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(str(path), [("", f"cannot read: {err}")]) from None
    cache_key = (str(path.resolve()), text)
    if cache_key in _LOADED:
        return _LOADED[cache_key]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(str(path), [("", f"not valid TOML: {err}")]) from None
    spec = parse_spec(data, str(path), text)
    mapping = spec.mapping.model_copy(
        update={
            key: str((path.parent / value).resolve())
            for key in ("overrides", "group_overrides")
            if (value := getattr(spec.mapping, key))
        }
    )
    loaded = spec.model_copy(
        update={"state": resolve_state_url(spec.state, path.parent), "mapping": mapping}
    )
    _LOADED[cache_key] = loaded
    return loaded


def resolve_state_url(url: str, base: Path) -> str:
    """Make a relative ``sqlite:///relative/path`` absolute against ``base``."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url
