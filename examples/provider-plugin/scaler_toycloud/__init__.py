"""A clearml-scaler provider for the toy cloud (``scaler_toycloud.cloud``, a cloud kept in a
JSON file): its config section, the four provider hooks, typed errors and the machine's
identity in the init script. docs/writing-a-provider.md builds it step by step."""

from scaler import api
from scaler_toycloud.cloud import ToyCloud, ToyCloudError

# the toy cloud's error codes -> the scaler's typed errors (any other code: ProviderError)
ERRORS = {"NoCapacity": api.CapacityError, "Quota": api.QuotaError, "Denied": api.AuthError, "Busy": api.TransientError}


@api.hookimpl
def scaler_config_sections():
    state_file = api.Field("state_file", "str", "The JSON file the toy cloud lives in.", required=True)
    size = api.Field("size", "choice", "Machine size.", default="small", choices=("small", "large"))
    return [api.Section("toycloud", "The toy cloud.", fields=(state_file,), resource_fields=(size,))]


def _call(config, method, *args):  # one call to the cloud's SDK, its errors turned into the scaler's typed errors
    try:
        return getattr(ToyCloud(config.provider_settings["state_file"]), method)(*args)
    except ToyCloudError as exc:
        raise ERRORS.get(exc.code, api.ProviderError)(f"toycloud {method}: {exc}", code=exc.code) from exc


def _instance(m):  # resource, launch token and fleet identity come from the machine's tags
    return api.Instance.from_tags(m["id"], m["tags"], api.InstanceState(m["state"]), m["launched_at"], spot=m["spot"])


@api.hookimpl
def scaler_launch(config, resource, count, init_script, launch_token, spot):
    tags = config.tags_for(resource.name, launch_token)  # the scaler's name, the fleet identity, resource, token
    size = resource.provider["size"]  # settings arrive validated, defaults applied
    return [_instance(m) for m in _call(config, "run", count, size, tags, init_script, spot, launch_token)]


@api.hookimpl
def scaler_list_instances(config):
    machines, page = _call(config, "describe", {api.TAG_SCALER: config.scaler.name})
    while page:  # every page, or a fleet bigger than one page loses machines
        more, page = _call(config, "describe", {api.TAG_SCALER: config.scaler.name}, page)
        machines += more
    return [_instance(m) for m in machines if config.listed(m["tags"])]  # never another deployment's machines


@api.hookimpl
def scaler_terminate(config, instance_ids):  # the toy cloud ignores ids it does not know: already gone is success
    return _call(config, "terminate", instance_ids) or True


@api.hookimpl
def scaler_console_output(config, instance_id):
    return _call(config, "console", instance_id)  # an unknown id: the cloud's NotFound, a ProviderError


@api.hookimpl
def scaler_tag_instances(config, instance_ids, tags):  # optional: adopts machines tagged before fleet identities
    return _call(config, "tag", instance_ids, tags) or True


@api.hookimpl
def scaler_init_script_parts():  # the worker id ends with the machine's own id
    return [api.ScriptPart(200, "instance identity", 'export SCALER_INSTANCE_ID="$(hostname)"')]
