"""A provider plugin with a misspelt hook and a hook without ``@hookimpl``: it must fail to
load, and none of its hooks may ever be called. ``CALLS`` records any call."""

from scaler.api import Instance, hookimpl

CALLS: list[str] = []


@hookimpl
def scaler_lauch(config, resource, count, init_script, launch_token, spot):  # type: ignore[no-untyped-def]
    CALLS.append("launch")
    return []


@hookimpl
def scaler_list_instances(config) -> list[Instance]:  # type: ignore[no-untyped-def]
    CALLS.append("list")
    return []


@hookimpl
def scaler_terminate(config, instance_ids):  # type: ignore[no-untyped-def]
    CALLS.append("terminate")
    return True


def scaler_console_output(config, instance_id):  # type: ignore[no-untyped-def]
    CALLS.append("console")
    return ""


@hookimpl
def scaler_clearml_conf_parts(provider):  # type: ignore[no-untyped-def]
    CALLS.append("clearml_conf_parts")
    return ["# from the typo plugin"]
