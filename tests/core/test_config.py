import pytest

from cloudq import App, ConfigurationError
from cloudq.config import load_settings


def test_defaults_point_at_the_embedded_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = App("x", **{})
    assert app.broker_url == f"sqlite:///{tmp_path / 'cloudq.db'}"
    assert app.results_url == app.broker_url


def test_precedence_kwargs_over_env_over_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cloudq]\ndefault_queue = "fromfile"\nmax_retries = 7\nresult_expires = 5\n'
    )
    env = {"CLOUDQ_MAX_RETRIES": "9", "CLOUDQ_RESULT_EXPIRES": "60"}
    settings = load_settings({"result_expires": 30}, environ=env, cwd=tmp_path)
    assert settings.default_queue == "fromfile"
    assert settings.max_retries == 9
    assert settings.result_expires == 30


def test_pyproject_is_found_in_a_parent_folder(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.cloudq]\nbroker = "memory://"\n')
    child = tmp_path / "a" / "b"
    child.mkdir(parents=True)
    assert load_settings(environ={}, cwd=child).broker == "memory://"


def test_cloudq_toml_is_read(tmp_path):
    (tmp_path / "cloudq.toml").write_text('routes = {"mail.*" = "mail"}\n')
    assert load_settings(environ={}, cwd=tmp_path).routes == {"mail.*": "mail"}


def test_json_env_values_for_mappings(tmp_path):
    settings = load_settings(environ={"CLOUDQ_ROUTES": '{"a.*": "qa"}'}, cwd=tmp_path)
    assert settings.routes == {"a.*": "qa"}


def test_bad_value_names_setting_source_and_rule(tmp_path):
    with pytest.raises(
        ConfigurationError,
        match=r"'prefetch_multiplier' \(from CLOUDQ_PREFETCH_MULTIPLIER\).*greater than or equal to 1",
    ):
        load_settings(environ={"CLOUDQ_PREFETCH_MULTIPLIER": "0"}, cwd=tmp_path)


def test_unknown_setting_in_pyproject_lists_known_ones(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.cloudq]\nbrokr = 'memory://'\n")
    with pytest.raises(ConfigurationError, match=r"unknown setting 'brokr'.*known settings: .*broker"):
        load_settings(environ={}, cwd=tmp_path)


def test_invalid_toml_is_a_clear_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.cloudq\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(environ={}, cwd=tmp_path)


def test_bad_json_env_value(tmp_path):
    with pytest.raises(ConfigurationError, match="CLOUDQ_ROUTES must be JSON"):
        load_settings(environ={"CLOUDQ_ROUTES": "{nope"}, cwd=tmp_path)


def test_signing_key_is_never_shown(tmp_path):
    settings = load_settings({"signing_key": "hunter2"}, environ={}, cwd=tmp_path)
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(App("x", broker="memory://", signing_key="hunter2"))


def test_unknown_scheme_and_missing_extra_are_clear(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="unknown broker scheme 'amqp'"):
        App("x", broker="amqp://localhost").broker
    with pytest.raises(ConfigurationError, match="no scheme"):
        App("x", broker="localhost").broker


def test_invalid_cloudq_toml_names_the_file_and_position(tmp_path):
    (tmp_path / "cloudq.toml").write_text('broker = "memory://"\nroutes = {a = \n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environ={}, cwd=tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'cloudq.toml'}: not valid TOML")
    assert "line 2" in str(caught.value)


def test_unknown_setting_suggests_the_close_match(tmp_path):
    (tmp_path / "cloudq.toml").write_text("brokr = 'memory://'\n")
    with pytest.raises(ConfigurationError, match=r"unknown setting 'brokr' .*\(did you mean 'broker'\?\)"):
        load_settings(environ={}, cwd=tmp_path)


def test_an_empty_variable_counts_as_unset(tmp_path):
    (tmp_path / "cloudq.toml").write_text("broker = 'memory://'\nroutes = {'a.*' = 'q'}\n")
    settings = load_settings(
        environ={"CLOUDQ_BROKER": "", "CLOUDQ_ROUTES": "", "CLOUDQ_MAX_RETRIES": " "}, cwd=tmp_path
    )
    assert (settings.broker, settings.routes, settings.max_retries) == ("memory://", {"a.*": "q"}, 3)


def test_unknown_cloudq_variables_are_warned_about_with_the_close_match(tmp_path, caplog):
    environ = {"CLOUDQ_BRKER": "sqs://", "CLOUDQ_APP": "tasks:app", "CLOUDQ_PUSH_AUDIENCE": "x", "CLOUDQ_BROKER": ""}
    with caplog.at_level("WARNING", logger="cloudq.config"):
        load_settings(environ=environ, cwd=tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.name == "cloudq.config"]
    assert warnings == ["ignoring unknown environment variable CLOUDQ_BRKER (did you mean 'CLOUDQ_BROKER'?)"]


def test_an_unknown_variable_without_a_close_match_lists_the_settings(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="cloudq.config"):
        load_settings(environ={"CLOUDQ_ZZZ_QQQ_XYZZY": "1"}, cwd=tmp_path)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "cloudq.config"]
    assert warning.startswith("ignoring unknown environment variable CLOUDQ_ZZZ_QQQ_XYZZY; ")
    assert "broker" in warning and "visibility_timeout" in warning
