"""Core's own configuration sections, declared like any plugin's (core's default plugin
answers ``scaler_config_sections`` with :data:`CORE_SECTIONS`): ``scaler``, the settings of
the whole fleet, and ``resources``, the keys every resource has (an inline section: its
fields sit on each resource itself, next to the provider's ``<provider> { … }``)."""

from __future__ import annotations

from scaler.config.fields import Ask, Field, Section
from scaler.config.model import DEFAULT_AGENT_VERSION

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
NAME_HINT = "letters, digits, '-', '_' or '.' (up to 63, starting with a letter or digit)"

# Upper bounds keep a typo (an extra zero, 10**30) from validating: far above any real fleet,
# low enough that the arithmetic of the loop stays exact. Durations have theirs in seconds.
MAX_PER_RESOURCE = 1000  #: max_instances, max_launch_per_tick
MAX_FLEET = 10_000  #: max_instances_total

SCALER_FIELDS = (
    Field(
        "name",
        "str",
        "Name of this fleet; tags every instance it owns. One name per fleet.",
        default="clearml-scaler",
        pattern=NAME_PATTERN,
        pattern_hint=NAME_HINT,
        ask="Name of this scaler (tags every machine it launches)",
    ),
    Field(
        "workers_prefix",
        "str",
        "Prefix of worker ids: `<workers_prefix>:<resource>:<instance id>`.",
        default="dynamic_worker",
        pattern=r"[^:\s]+",
        pattern_hint="text without ':' or spaces",
        vault=("workers_prefix",),
        ask="Worker id prefix",
    ),
    Field(
        "polling_interval",
        "duration",
        "Time between two ticks of the loop.",
        default=30.0,
        min=1,
        max=3600,
        vault=("polling_interval_time_min",),
        ask=Ask("Check the queues every (e.g. 30s)", default="30s"),
    ),
    Field(
        "max_idle_time",
        "duration",
        "An instance whose worker has been idle this long is terminated.",
        default=900.0,
        min=0,
        max=7 * 86400,
        vault=("max_idle_time_min",),
        ask=Ask("Terminate a machine idle for (e.g. 15m)", default="15m"),
    ),
    Field(
        "stuck_timeout",
        "duration",
        "An instance with no registered worker this long after launch is terminated (console saved first).",
        default=1200.0,
        min=60,
        max=86400,
        vault=("max_spin_up_time_min",),
    ),
    Field(
        "create_queues",
        "bool",
        "Create the queues named in `resources` that do not exist on the ClearML server when the scaler "
        "starts (one INFO line each), as ClearML's autoscaler does; `false`: a missing queue stops the "
        "scaler with an error naming it (a typo would otherwise never scale).",
        default=True,
    ),
    Field(
        "default_docker_image",
        "str",
        'Docker image the agents run tasks in (unless the task sets one). `null`, `""` or `none` (any case): '
        "no docker, the agents run tasks in virtual environments on the machine (`clearml-agent daemon` "
        "without `--docker`). With docker the boot script checks that docker is installed and running and "
        "says so in the console output when it is not.",
        default="nvidia/cuda:12.4.1-runtime-ubuntu22.04",
        vault=("default_docker_image",),
        ask="Default docker image for tasks",
    ),
    Field(
        "git",
        "section",
        "Git credentials the agents use to clone task repositories.",
        fields=(
            Field("user", "str", "Git user name.", default="", vault=("git_user",), ask="Git user (empty: none)"),
            Field(
                "password",
                "secret",
                "Git password or token.",
                default="",
                env="SCALER_GIT_TOKEN",
                vault=("git_pass",),
                ask="Git token or password (hidden; empty: none)",
            ),
        ),
    ),
    Field("init_script", "text", "Bash run on every machine before the agent starts.", default=""),
    Field(
        "extra_clearml_conf",
        "text",
        "HOCON appended to the agents' clearml.conf.",
        default="",
        vault=("extra_trains_conf",),
    ),
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
        "orphan_grace",
        "duration",
        "An orphan (instance of a resource no longer configured) is terminated only once it is this old, "
        "and only when it carries this fleet's identity.",
        default=600.0,
        min=0,
        max=7 * 86400,
    ),
    Field(
        "requeue_interrupted_tasks",
        "bool",
        "Re-enqueue a task whose machine vanished (spot reclaim, crash) while running it.",
        default=True,
    ),
    Field(
        "max_requeues",
        "int",
        "Re-enqueue one task at most this many times; when its machine vanishes once more, the task is "
        "left failed with the reason in its status message (0 = never re-enqueue).",
        default=3,
        min=0,
        max=100,
    ),
    Field(
        "agent_credentials",
        "section",
        "ClearML credentials the launched agents use (default: the scaler's own).",
        fields=(
            Field("access_key", "secret", "ClearML access key for agents.", default="", env="SCALER_AGENT_ACCESS_KEY"),
            Field("secret_key", "secret", "ClearML secret key for agents.", default="", env="SCALER_AGENT_SECRET_KEY"),
        ),
    ),
    Field(
        "agent_version",
        "str",
        "pip version specifier of the clearml-agent the machines install (`pip install --upgrade "
        '"clearml-agent<agent_version>"` into a virtual environment at boot), e.g. `==3.0.3`. The default is '
        "the range the boot script is tested with; empty: keep a clearml-agent the machine image already has "
        "(any version), else install the latest. A failed install is shown in the console output and shuts "
        "the machine down.",
        default=DEFAULT_AGENT_VERSION,
    ),
    Field(
        "max_instances_total",
        "int",
        "Fleet-wide cap on instances across resources (0 = none).",
        default=0,
        min=0,
        max=MAX_FLEET,
    ),
    Field(
        "max_hourly_cost",
        "float",
        "Fleet-wide cap on summed `price_per_hour` (0 = none).",
        default=0.0,
        min=0,
        max=1_000_000,
    ),
    Field(
        "max_launch_per_tick",
        "int",
        "At most this many instances launched per resource per tick (0 = no limit).",
        default=0,
        min=0,
        max=MAX_PER_RESOURCE,
    ),
    Field(
        "idle_policy",
        "choice",
        "When an idle machine is terminated: `adaptive` ends it as soon as its queue's recent arrivals say "
        "the next task for it is not due within about two boot times (never before `min_idle_time`, always "
        "by `max_idle_time`); `fixed` keeps every idle machine `max_idle_time`. See docs/how-it-works.md.",
        default="adaptive",
        choices=("adaptive", "fixed"),
    ),
    Field(
        "min_idle_time",
        "duration",
        "idle_policy = adaptive: an idle machine is kept at least this long (a floor for interactive teams "
        "who want machines kept warm; above `max_idle_time` it counts as `max_idle_time`).",
        default=0.0,
        min=0,
        max=7 * 86400,
    ),
    Field(
        "max_spill_wait",
        "duration",
        "How long a pending task may be left to the busy workers of its queue, when they are expected to "
        "finish within it, instead of launching a dearer machine for it (a spot resource's on-demand fallback, "
        "a pricier resource): used on queues whose tasks run long, up to as long as a short run of the queue; "
        "0 = at most about two boot times. See docs/how-it-works.md.",
        default=1800.0,
        min=0,
        max=86400,
    ),
    Field(
        "spill_delay",
        "duration",
        "How long a queue must have been short of machines of its cheapest resources before a machine of a "
        "pricier resource (higher `price_per_hour`) is launched for it: a shortage that ends sooner, as busy "
        "workers finish or cheaper machines boot, never pays the higher price; waiting tasks may wait up to "
        "this much longer. A spot resource's own on-demand fallback waits `regular_instance_rollback_timeout` "
        "instead. 0 = at once (the default). See docs/how-it-works.md for when 15m pays.",
        default=0.0,
        min=0,
        max=86400,
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
        ask="Resource name (e.g. gpu-a10)",
    ),
    Field(
        "queue",
        "str",
        "ClearML queue whose pending tasks this resource serves.",
        required=True,
        non_empty=True,
        example='queue = "gpu"',
        ask="ClearML queue it serves",
    ),
    Field(
        "max_instances",
        "int",
        "Never more than this many live instances of this resource.",
        required=True,
        min=1,
        max=MAX_PER_RESOURCE,
        example="max_instances = 4",
        ask=Ask("Most machines of this resource at once", default=2),
    ),
    Field("cpu_only", "bool", "Run the agent with `--cpu-only` (no GPUs).", default=False, clearml=("cpu_only",)),
    Field(
        "spot",
        "bool",
        "Launch spot/preemptible instances (falls back to on-demand on capacity errors).",
        default=False,
        clearml=("is_spot",),
        ask="Spot instances?",
    ),
    Field(
        "regular_instance_rollback_timeout",
        "duration",
        "How long spot capacity errors are retried before launching on-demand instead.",
        default=600.0,
        min=0,
        max=86400,
    ),
    Field(
        "spot_blackout_period",
        "duration",
        "After a spot fallback, launch this resource on-demand directly for this long.",
        default=1800.0,
        min=0,
        max=7 * 86400,
    ),
    Field(
        "price_per_hour",
        "float",
        "Price of one instance per hour (for `max_hourly_cost`, status, simulate).",
        default=0.0,
        min=0,
        max=10_000,
    ),
    Field(
        "docker_image",
        "str",
        'Docker image for this resource (not set: `scaler.default_docker_image`). `null`, `""` or `none` '
        "(any case): no docker on this resource, whatever the default.",
        default="",
    ),
    Field(
        "init_script",
        "text",
        "Bash run on this resource's machines after `scaler.init_script`.",
        default="",
        ask="Bash to run before the agent starts (one line, @FILE to read a file; empty: none)",
    ),
    Field("extra_agent_args", "list", "Extra arguments for `clearml-agent daemon` on this resource.", default=[]),
    Field(
        "provider",
        "str",
        "The provider (cloud) this resource's machines run on: an installed provider's name (`scaler providers`). "
        "Not set: the provider whose subsection the resource holds, else the configuration's one cloud section; "
        "required when the configuration holds several clouds. One fleet may span several clouds "
        "(docs/multi-cloud.md).",
        default="",
        example="provider = mycloud",
    ),
)

SCALER = Section("scaler", "Settings of the whole fleet.", fields=SCALER_FIELDS)
RESOURCES = Section(
    "resources",
    "One entry per kind of machine, filled in this order for its queue.",
    resource_fields=RESOURCE_FIELDS,
    inline=True,
)
CORE_SECTIONS = (SCALER, RESOURCES)
