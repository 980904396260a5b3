"""Schemas of core's own config sections: ``scaler`` and the common keys of ``resources``."""

from __future__ import annotations

from scaler.config.fields import Field

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
NAME_HINT = "letters, digits, '-', '_' or '.' (up to 63, starting with a letter or digit)"

SCALER_SECTION = (
    Field(
        "name",
        "str",
        "Name of this fleet; tags every instance it owns. One name per fleet.",
        default="clearml-scaler",
        pattern=NAME_PATTERN,
        pattern_hint=NAME_HINT,
    ),
    Field(
        "workers_prefix",
        "str",
        "Prefix of worker ids: `<workers_prefix>:<resource>:<instance id>`.",
        default="dynamic_worker",
        pattern=r"[^:\s]+",
        pattern_hint="text without ':' or spaces",
    ),
    Field("polling_interval", "duration", "Time between two ticks of the loop.", default=30.0, min=1),
    Field(
        "max_idle_time",
        "duration",
        "An instance whose worker has been idle this long is terminated.",
        default=900.0,
        min=0,
    ),
    Field(
        "stuck_timeout",
        "duration",
        "An instance with no registered worker this long after launch is terminated (console saved first).",
        default=1200.0,
        min=60,
    ),
    Field(
        "default_docker_image",
        "str",
        "Docker image the agents run tasks in (unless the task sets one).",
        default="nvidia/cuda:12.4.1-runtime-ubuntu22.04",
    ),
    Field(
        "git",
        "section",
        "Git credentials the agents use to clone task repositories.",
        fields=(
            Field("user", "str", "Git user name.", default=""),
            Field("password", "secret", "Git password or token (use `${?SCALER_GIT_TOKEN}`).", default=""),
        ),
    ),
    Field("init_script", "text", "Bash run on every machine before the agent starts.", default=""),
    Field("extra_clearml_conf", "text", "HOCON appended to the agents' clearml.conf.", default=""),
    Field("exclude_bashrc", "bool", "Do not source ~/.bashrc in the init script.", default=False),
    Field("apply_vault", "bool", "Merge the vault (`--vault FILE`) over this configuration.", default=True),
    Field(
        "ignore_vault_parsing_errors",
        "bool",
        "Skip a vault (or match section) that cannot be parsed instead of refusing to start.",
        default=False,
    ),
    Field("warn_duplicate_task_runs", "bool", "Warn when more than one worker runs the same task.", default=True),
    Field(
        "orphans",
        "choice",
        "What to do with instances of resources no longer configured.",
        default="terminate",
        choices=("terminate", "keep"),
    ),
    Field(
        "requeue_interrupted_tasks",
        "bool",
        "Re-enqueue a task whose machine vanished (spot reclaim, crash) while running it.",
        default=True,
    ),
    Field(
        "agent_credentials",
        "section",
        "ClearML credentials the launched agents use (default: the scaler's own).",
        fields=(
            Field("access_key", "secret", "ClearML access key for agents.", default=""),
            Field("secret_key", "secret", "ClearML secret key for agents.", default=""),
        ),
    ),
    Field(
        "agent_version", "str", "pip requirement spec for clearml-agent on the machines, e.g. `==1.9.3`.", default=""
    ),
    Field("max_instances_total", "int", "Fleet-wide cap on instances across resources (0 = none).", default=0, min=0),
    Field("max_hourly_cost", "float", "Fleet-wide cap on summed `price_per_hour` (0 = none).", default=0.0, min=0),
    Field(
        "max_launch_per_tick",
        "int",
        "At most this many instances launched per resource per tick (0 = no limit).",
        default=0,
        min=0,
    ),
)

RESOURCE_FIELDS = (
    Field(
        "name",
        "str",
        "Resource name: tags its instances and appears in worker ids.",
        required=True,
        pattern=NAME_PATTERN,
        pattern_hint=NAME_HINT,
        example='name = "gpu-a10"',
    ),
    Field(
        "queue",
        "str",
        "ClearML queue whose pending tasks this resource serves.",
        required=True,
        non_empty=True,
        example='queue = "gpu"',
    ),
    Field(
        "max_instances",
        "int",
        "Never more than this many live instances of this resource.",
        required=True,
        min=1,
        example="max_instances = 4",
    ),
    Field("cpu_only", "bool", "Run the agent with `--cpu-only` (no GPUs).", default=False),
    Field(
        "spot", "bool", "Launch spot/preemptible instances (falls back to on-demand on capacity errors).", default=False
    ),
    Field(
        "regular_instance_rollback_timeout",
        "duration",
        "How long spot capacity errors are retried before launching on-demand instead.",
        default=600.0,
        min=0,
    ),
    Field(
        "spot_blackout_period",
        "duration",
        "After a spot fallback, launch this resource on-demand directly for this long.",
        default=1800.0,
        min=0,
    ),
    Field(
        "price_per_hour",
        "float",
        "Price of one instance per hour (for `max_hourly_cost`, status, simulate).",
        default=0.0,
        min=0,
    ),
    Field(
        "docker_image", "str", "Docker image for this resource (default: `scaler.default_docker_image`).", default=""
    ),
    Field("init_script", "text", "Bash run on this resource's machines after `scaler.init_script`.", default=""),
    Field("extra_agent_args", "list", "Extra arguments for `clearml-agent daemon` on this resource.", default=[]),
)

TOP_LEVEL_KEYS = ("scaler", "resources")
