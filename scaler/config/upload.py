"""What a configuration would give away if it were stored somewhere else as written.

``scaler run --remote`` stores the configuration file (and a ``--vault`` file) in a ClearML
task, where everyone who can open the task's project reads it. A secret may leave the machine
only as a reference: a secret field written as its own variable (``password =
${?SCALER_GIT_TOKEN}``), resolved on the agent from its environment, or left out and set by
the task owner's ClearML vault. :func:`secrets_in_clear` lists everything else: a secret field
with a literal value, a vault key that holds a secret, and a secret inside free text
(``init_script``, ``extra_clearml_conf``, a vault script) as :mod:`scaler.config.redact` finds
it. Pure: the texts are parsed as data, nothing is read or resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scaler.config import redact
from scaler.config.catalog import Catalog, leaf_values, parse_path, path_str


@dataclass(frozen=True)
class ClearSecret:
    """A secret that a text holds in clear.

    ``where`` is the key path (``scaler.git.password``; in a vault file ``<file>:
    auto_scaler.v1.aws.aws_secret_access_key``), ``what`` says what it is (``a secret written as
    its value``, ``the argument of -p on line 2``), ``env`` the variable a typed secret field
    reads and ``vault_keys`` the keys of ``auto_scaler.v1.<provider>`` that set it.
    ``in_text``: the secret is inside free text (a script, a clearml.conf snippet);
    ``in_vault``: it is in a vault file.
    """

    where: str
    what: str
    env: str = ""
    vault_keys: tuple[str, ...] = ()
    in_text: bool = False
    in_vault: bool = False

    def advice(self, provider: str) -> str:
        """How to keep this secret off the task: the agent's environment or the ClearML vault."""
        section = f"auto_scaler.v1.{provider}"
        if self.in_vault:
            return f"put this in your ClearML vault ({section} {{ … }}) instead of a --vault file"
        if self.in_text:
            return (
                f"move the text that holds it to your ClearML vault ({section} {{ extra_vm_bash_script = … }} or "
                "extra_clearml_conf), or have the script read the secret from where the machine keeps it"
            )
        leaf = self.where.rsplit(".", 1)[-1]
        vault = (
            f"key {' or '.join(self.vault_keys)} of {section}"
            if self.vault_keys
            # the ClearML SDK sets a vault's `environment` section as variables when the vault also
            # says `sdk.apply_environment = true` (on servers with vaults)
            else f"environment {{ {self.env} = … }} with sdk.apply_environment = true"
        )
        return (
            f"write `{leaf} = ${{?{self.env}}}` and set {self.env} in the environment of the clearml-agent "
            f"that runs the task, or in your ClearML vault ({vault})"
        )


def _in_text(where: str, text: str, *, in_vault: bool = False) -> list[ClearSecret]:
    return [
        ClearSecret(
            where,
            f"{hit.what} on line {hit.line}" if "\n" in text.strip() else hit.what,
            in_text=True,
            in_vault=in_vault,
        )
        for hit in redact.find(text)
    ]


def secrets_in_config(
    raw: Mapping[str, Any], references: Mapping[str, str], catalog: Catalog, provider: str
) -> list[ClearSecret]:
    """The secrets in clear of a parsed configuration; ``references`` are the paths written as one
    ``${?VAR}`` substitution (:func:`scaler.config.exporting.substitutions`)."""
    vault_keys: dict[str, list[str]] = {}
    for key, target in catalog.vault_keys(provider).items():
        vault_keys.setdefault(target, []).append(key)
    found: list[ClearSecret] = []
    for path, value in leaf_values(raw):
        where = path_str(path)
        if path and catalog.is_secret(path):
            if value not in (None, "") and where not in references:
                keys = tuple(vault_keys.get(where, ()))
                found.append(ClearSecret(where, "a secret written as its value", catalog.env_for(path), keys))
        elif isinstance(value, str):
            found += _in_text(where, value)
    return found


def secrets_in_vault(tree: Mapping[str, Any], catalog: Catalog, provider: str, source: str) -> list[ClearSecret]:
    """The secrets in a parsed vault (a vault is data: every value in it is literal). A key
    holds a secret when the config field it sets is one, or, for any other key, by its name."""
    key_map = catalog.vault_keys(provider)

    def secret_key(key: str) -> bool:
        target = key_map.get(key)
        if target:
            return catalog.is_secret(parse_path(target))
        return bool(redact.SECRET_NAME.search(key)) or redact.is_secret_name(key)

    found: list[ClearSecret] = []
    for path, value in leaf_values(tree):
        where = f"{source}: {path_str(path)}"
        if path and isinstance(path[-1], str) and secret_key(path[-1]):
            if value not in (None, ""):
                found.append(ClearSecret(where, "a secret written as its value", in_vault=True))
        elif isinstance(value, str):
            found += _in_text(where, value, in_vault=True)
    return found
