"""The settings table: every setting round-trips through the file, the environment
and its flag, values are layered flag > environment > file > default, and a bad
value names the setting and what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import InstanceConfig, apply_environment, parse_config, render_config
from agent.config.model import INSTANCE_SETTINGS
from agent.config.settings import (
    Flag,
    apply_flags,
    coerce_settings,
    document_of,
    from_document,
    setting,
    settings_of,
    shown_of,
)
from agent.errors import ConfigError

HOME = Path("/srv/tentacle")
SERVER = {"address": "https://hub.example:10943/", "thumbprint": "AB" * 20}

# Setting -> (a value that is not the default, as a file holds it; the same as an
# environment variable gives it, or None if the setting has no variable; a bad value).
# A new setting must be added here: test_every_setting_has_an_example says so.
EXAMPLES: dict[str, tuple[Any, str | None, Any]] = {
    "home": ("/data/other", "/data/other", "relative/home"),
    "application_directory": ("/apps", "/apps", "apps"),
    "port": (12000, "12000", 70000),
    "listen_ip": ("::1", "::1", "10.0.0.300"),
    "no_listen": (True, "yes", "perhaps"),
    "polling_connection_count": (7, "7", 0),
    "heartbeat_interval": (2.5, "2.5", 0.0),
    "file_roots": (["/a", "/b"], "/a:/b", ["relative"]),
    "max_running_scripts": (4, "4", -1),
    "workspace_retention": (60.0, "60", "soon"),
    "workspace_sweep_interval": (5.0, "5", -5),
    "script_cgroups": (False, "false", "perhaps"),
    "script_memory_max": (512 << 20, "512M", "lots"),
    "script_pids_max": (64, "64", -1),
    "script_cpu_weight": (50, "50", 10001),
    "script_users": (False, "off", "perhaps"),
    "script_uid_range": ("70000-70009", "70000-70009", "9-1"),
    "subscription_id": ("poll://abcdefghijklmnopqrst/", None, "poll://short/"),
    "polling_servers": ([SERVER], None, [{"address": "nowhere"}]),
    "polling_proxy_host": ("proxy.example", None, 42),
    "polling_proxy_port": (3128, None, 99999),
    "polling_proxy_username": ("me", None, 42),
    "polling_proxy_password": ("secret", None, 42),
}
ROWS = {row.name: row for row in INSTANCE_SETTINGS}


def test_every_setting_has_an_example() -> None:
    assert list(EXAMPLES) == list(ROWS)


def test_the_table_names_each_variable_flag_and_shown_key_once() -> None:
    for column in ("env", "shown_as"):
        values = [getattr(row, column) for row in INSTANCE_SETTINGS if getattr(row, column)]
        assert len(values) == len(set(values)), column
    flags = [row.flag.name for row in INSTANCE_SETTINGS if row.flag]
    assert len(flags) == len(set(flags))


@pytest.mark.parametrize("name", [name for name in ROWS if name != "home"])
def test_each_default_is_what_its_own_coercion_makes_of_its_file_form(name: str) -> None:
    row = ROWS[name]
    assert row.coerce(row.dump(row.default)) == row.default


@pytest.mark.parametrize("name", list(ROWS))
def test_each_setting_round_trips_through_the_file(name: str) -> None:
    config = InstanceConfig(home=HOME).with_settings(**{name: EXAMPLES[name][0]})
    assert config != InstanceConfig(home=HOME)
    path = config.home / "tentacle.yaml"
    assert parse_config(render_config(config), path) == config


@pytest.mark.parametrize("name", [name for name in ROWS if ROWS[name].env])
def test_each_variable_overrides_the_file(name: str) -> None:
    file_value, env_text, _ = EXAMPLES[name]
    variable = ROWS[name].env
    assert variable is not None
    assert env_text is not None
    from_env = apply_environment(InstanceConfig(home=HOME), {variable: env_text})
    assert from_env == InstanceConfig(home=HOME).with_settings(**{name: file_value})


@pytest.mark.parametrize("name", [name for name, (_, env, _) in EXAMPLES.items() if env])
def test_each_example_with_a_variable_has_one_in_the_table(name: str) -> None:
    assert ROWS[name].env


@pytest.mark.parametrize("name", list(ROWS))
def test_a_bad_value_names_the_setting_and_what_was_expected(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: expected .*, got "):
        InstanceConfig(home=HOME).with_settings(**{name: EXAMPLES[name][2]})


@pytest.mark.parametrize("name", [name for name in ROWS if ROWS[name].env])
def test_a_bad_variable_names_the_variable_the_setting_and_what_was_expected(name: str) -> None:
    variable = ROWS[name].env
    assert variable is not None
    bad = EXAMPLES[name][2]
    text = ":".join(bad) if isinstance(bad, list) else str(bad)
    with pytest.raises(ConfigError, match=rf"^environment variable {variable}: {name}: expected"):
        apply_environment(InstanceConfig(home=HOME), {variable: text})


def test_a_bad_file_value_names_the_file_line_setting_and_what_was_expected() -> None:
    text = "port: 10933\nmax_running_scripts: lots\n"
    with pytest.raises(ConfigError, match=r"line 2: max_running_scripts: expected a whole"):
        parse_config(text, HOME / "tentacle.yaml")


def test_the_secret_stays_out_of_repr_but_not_out_of_the_file() -> None:
    config = InstanceConfig(home=HOME).with_settings(polling_proxy_password="hunter2")
    assert "hunter2" not in repr(config)
    assert document_of(config)["polling_proxy_password"] == "hunter2"


def test_shown_values_are_as_a_person_reads_them() -> None:
    shown = shown_of(InstanceConfig(home=HOME).with_settings(file_roots=["/a"]))
    assert shown["ListenIpAddress"] == "any"
    assert shown["ApplicationDirectory"] == str(HOME / "Applications")
    assert shown["FileRoots"] == ["/a"]
    assert "PollingProxyPassword" not in shown


# Another settings set, as the hub's will be: the table is not the agent's alone.
def _listen(value: Any) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


def _workers(value: Any) -> int:
    if isinstance(value, bool) or not str(value).isdecimal() or int(value) < 1:
        raise ValueError(f"expected a whole number of 1 or more, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class HubLike:
    home: Path = setting(Path(), Path, required=True, dump=str)
    listen: str = setting(
        "127.0.0.1:8065", _listen, env="HUB_LISTEN", flag=Flag("--listen"), shown_as="Listen"
    )
    workers: int = setting(4, _workers, env="HUB_WORKERS", flag=Flag("--workers", "int"))


def _layered(file: dict[str, Any], environ: dict[str, str], flags: dict[str, Any]) -> HubLike:
    from agent.config.settings import apply_environment as layer_environment

    return apply_flags(layer_environment(from_document(HubLike, file, home="/h"), environ), flags)


def test_precedence_is_flag_then_environment_then_file_then_default() -> None:
    file, env, flag = {"listen": "file:1"}, {"HUB_LISTEN": "env:2"}, {"listen": "flag:3"}
    assert _layered({}, {}, {}).listen == "127.0.0.1:8065"
    assert _layered(file, {}, {}).listen == "file:1"
    assert _layered(file, env, {}).listen == "env:2"
    assert _layered(file, env, flag).listen == "flag:3"
    assert _layered(file, env, {"listen": None}).listen == "env:2"  # a flag not given
    assert _layered({}, {"HUB_LISTEN": ""}, {}).listen == "127.0.0.1:8065"  # empty: unset


def test_another_settings_set_gets_the_same_errors() -> None:
    with pytest.raises(ValueError, match=r"^unknown setting 'lisen' \(known settings: home"):
        from_document(HubLike, {"lisen": "x:1"}, home="/h")
    with pytest.raises(ValueError, match=r"^workers: expected a whole number of 1 or more, got 0"):
        from_document(HubLike, {"workers": 0}, home="/h")
    with pytest.raises(ConfigError, match=r"^environment variable HUB_LISTEN: listen: expected"):
        _layered({}, {"HUB_LISTEN": "nocolon"}, {})
    with pytest.raises(ValueError, match=r"^workers: expected"):
        _layered({}, {}, {"workers": -1})
    with pytest.raises(KeyError):
        coerce_settings(HubLike, {"nope": 1})
    assert [row.name for row in settings_of(HubLike)] == ["home", "listen", "workers"]
    assert document_of(_layered({}, {}, {})) == {
        "home": "/h",
        "listen": "127.0.0.1:8065",
        "workers": 4,
    }


def test_the_readme_names_every_environment_variable() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    missing = [row.env for row in INSTANCE_SETTINGS if row.env and f"`{row.env}`" not in readme]
    assert not missing, f"README.md does not name {missing}"


def test_another_settings_set_reads_its_own_yaml_with_lines_in_errors() -> None:
    from agent.config.document import parse_settings

    path = Path("/h/hub.yaml")
    hub, extras = parse_settings(
        HubLike, "listen: 0.0.0.0:8065\napi_keys: [a]\n", path, base={"home": "/h"},
        extra=("api_keys",),
    )  # fmt: skip
    assert (hub.listen, hub.workers, extras["api_keys"][0]) == ("0.0.0.0:8065", 4, ["a"])
    assert parse_settings(HubLike, "", path, base={"home": "/h"})[0] == _layered({}, {}, {})
    with pytest.raises(ConfigError, match=r"^/h/hub.yaml line 2: workers: expected a whole"):
        parse_settings(HubLike, "listen: a:1\nworkers: many\n", path, base={"home": "/h"})
    with pytest.raises(ConfigError, match=r"line 3: unknown setting 'wrkers' \(known settings: "):
        parse_settings(HubLike, "listen: a:1\n\nwrkers: 2\n", path, base={"home": "/h"})


@dataclass(frozen=True)
class Keyed:
    listen: str = setting("127.0.0.1:8065", _listen, key="Listen", env="HUB_LISTEN")
    workers: int = setting(4, _workers, key="Workers")


def test_a_setting_may_be_filed_under_a_key_of_its_own() -> None:
    from agent.config.document import parse_settings

    assert [row.key for row in settings_of(Keyed)] == ["Listen", "Workers"]
    keyed = from_document(Keyed, {"Listen": "a:1"})
    assert (keyed.listen, document_of(keyed)) == ("a:1", {"Listen": "a:1", "Workers": 4})
    with pytest.raises(ValueError, match=r"^unknown setting 'listen' \(known settings: Listen,"):
        from_document(Keyed, {"listen": "a:1"})
    path = Path("/h/hub.yaml")
    with pytest.raises(ConfigError, match=r"^/h/hub.yaml line 2: Workers: expected a whole"):
        parse_settings(Keyed, "Listen: a:1\nWorkers: many\n", path, base={})
    with pytest.raises(ValueError, match=r"^Listen: expected HOST:PORT"):
        apply_flags(keyed, {"listen": "nocolon"})
