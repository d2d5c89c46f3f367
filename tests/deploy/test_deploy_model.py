"""The provider-neutral parts, without any cloud: the model derived from an app, the deploy
settings, diffing, the YAML writer, deployer lookup."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from cloudq_aws.deploy.yaml_text import dump

from cloudq import App
from cloudq.deploy import ApplyFailed, DeployRefused, Resource, Step, apply_plan, build_model, diff
from cloudq.deploy.registry import deployer_for
from cloudq.deploy.render import leaf_changes
from cloudq.deploy.settings import parse_deploy_settings
from cloudq.errors import ConfigurationError


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> App:
    monkeypatch.chdir(tmp_path)
    app = App(
        "shop",
        broker="sqs://",
        routes={"reports.*": "reports"},
        max_retries=4,
        deploy={
            "stage": "qa",
            "queues": {
                "*": {"runtime": "container", "memory": 256},
                "e*": {"runtime": "lambda", "batch_size": 5},
                "emails": {"batch_size": 7},
            },
        },
    )

    @app.task(name="send", queue="emails", max_retries=2, time_limit=30, retry_backoff=5)
    def send() -> None: ...

    @app.task(name="send_bulk", queue="emails", max_retries=6, time_limit=10, retry_backoff=2)
    def send_bulk() -> None: ...

    @app.task(name="reports.daily")
    def daily() -> None: ...

    return app


def test_model_has_every_routed_queue_with_its_tasks_strictest_needs(app: App) -> None:
    model = build_model(app, "shop:app")
    assert [q.name for q in model.queues] == ["default", "emails", "reports"]
    assert model.stage == "qa"
    emails = model.queue("emails")
    assert [t.name for t in emails.tasks] == ["send", "send_bulk"]
    assert emails.max_retries == 6 and emails.time_limit == 30
    assert emails.min_backoff == 2 and emails.max_backoff == 600
    assert model.queue("reports").tasks[0].name == "reports.daily"
    default = model.queue("default")
    assert default.tasks == () and default.max_retries == 4 and default.time_limit is None
    assert model.schedules == ()


def test_queue_options_merge_globs_in_order_then_the_exact_name(app: App) -> None:
    model = build_model(app, "shop:app", stage="prod")
    assert model.stage == "prod"
    emails = model.queue("emails").options
    assert (emails.runtime, emails.batch_size, emails.memory) == ("lambda", 7, 256)
    assert model.queue("emails").runtime == "lambda"
    assert model.queue("reports").runtime == "container"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"queues": {"q": {"runtime": "k8s"}}}, "invalid deploy setting 'queues.q.runtime'"),
        ({"stage": "Prod"}, "invalid deploy setting 'stage'"),
        ({"queus": {}}, "unknown deploy setting 'queus'"),
        ({"queues": {"q": {"memory": 64}}}, "invalid deploy setting 'queues.q.memory'"),
    ],
)
def test_bad_deploy_settings_name_the_setting(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[")):
        parse_deploy_settings(raw)


def test_lambda_target_and_log_retention_are_validated_with_what_is_allowed() -> None:
    with pytest.raises(ConfigurationError) as bad_runtime:
        parse_deploy_settings({"lambda_runtime": "python3.10"})
    assert str(bad_runtime.value) == (
        "invalid deploy setting 'lambda_runtime': 'python3.10' is not a Lambda runtime cloudq runs on; use one of "
        "python3.11, python3.12, python3.13, python3.14 (in [tool.cloudq.deploy] or CLOUDQ_DEPLOY)"
    )
    with pytest.raises(ConfigurationError, match=r"'lambda_architecture': Input should be 'x86_64' or 'arm64'"):
        parse_deploy_settings({"lambda_architecture": "aarch64"})
    with pytest.raises(ConfigurationError) as bad_retention:
        parse_deploy_settings({"log_retention_days": 10})
    assert "invalid deploy setting 'log_retention_days': CloudWatch Logs keeps logs for one of 1, 3, 5, 7, 14, 30" in (
        str(bad_retention.value)
    )
    assert "3653 days, not 10" in str(bad_retention.value)
    defaults = parse_deploy_settings({})
    assert (defaults.lambda_runtime, defaults.lambda_architecture, defaults.log_retention_days) == (
        "python3.13",
        "x86_64",
        30,
    )
    chosen = parse_deploy_settings(
        {"lambda_runtime": "python3.12", "lambda_architecture": "arm64", "log_retention_days": 7}
    )
    assert (chosen.lambda_runtime, chosen.lambda_architecture, chosen.log_retention_days) == ("python3.12", "arm64", 7)


def test_deploy_settings_come_from_pyproject(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cloudq]\nbroker = "sqs://"\n[tool.cloudq.deploy]\nstage = "prod"\n'
        '[tool.cloudq.deploy.queues."orders.fifo"]\nruntime = "lambda"\n'
    )
    monkeypatch.chdir(tmp_path)
    model = build_model(App("shop", default_queue="orders.fifo"), "shop:app")
    assert model.stage == "prod" and model.queue("orders.fifo").runtime == "lambda"


def _r(name: str, **spec: Any) -> Resource:
    return Resource("thing", name, spec, frozenset({"fixed"}))


def test_diff_plans_create_update_unchanged_and_delete() -> None:
    desired = [_r("a", size=1), _r("b", size=2, tags={"x": "1"}), _r("c", size=3)]
    live = {"thing:b": _r("b", size=5, tags={"x": "1"}, extra="ignored"), "thing:c": _r("c", size=3)}
    managed = [_r("c"), _r("old1"), _r("old2")]
    plan = diff("test", "shop", "dev", desired, live, managed)
    assert [(s.action, s.resource.name) for s in plan.steps] == [
        ("create", "a"),
        ("update", "b"),
        ("unchanged", "c"),
        ("delete", "old2"),
        ("delete", "old1"),
    ]
    assert plan.steps[1].changes == {"size": (5, 2)}
    assert not plan.is_noop and plan.count("delete") == 2
    assert plan.to_dict()["summary"] == {"create": 1, "update": 1, "unchanged": 1, "delete": 2}


def test_diff_refuses_to_change_a_create_only_attribute_or_take_over_another_stage() -> None:
    with pytest.raises(DeployRefused, match="thing a: fixed cannot change in place"):
        diff("test", "shop", "dev", [_r("a", fixed=True)], {"thing:a": _r("a", fixed=False)})
    theirs = Resource("thing", "a", {}, owner=("shop", "prod"))
    with pytest.raises(DeployRefused, match="thing a belongs to app 'shop' stage 'prod'"):
        diff("test", "shop", "dev", [_r("a")], {"thing:a": theirs})


def test_leaf_changes_show_the_smallest_difference() -> None:
    old = {"Statement": [{"Sid": "A", "Resource": ["x", "y"]}, {"Sid": "B", "Action": ["s"]}], "n": 1}
    new = {"Statement": [{"Sid": "A", "Resource": ["x", "z"]}, {"Sid": "B", "Action": ["s"]}], "n": 2}
    assert leaf_changes("Policy", old, new) == ["Policy.Statement[A].Resource: -y +z", "Policy.n: 1 -> 2"]


def test_yaml_writer_round_trips_through_a_yaml_parser() -> None:
    data = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"n": 1, "on": True, "no": "no", "empty": {}}},
            "List": [{"Key": "a: b", "Value": "yes"}, [], "null", 1.5, None],
        },
        "with space": ["x"],
    }
    text = dump(data)
    assert yaml.safe_load(text) == data
    assert dump(data) == text


def test_deployer_lookup_by_broker_scheme(app: App) -> None:
    from cloudq_aws.deploy.deployer import AWSDeployer

    assert isinstance(deployer_for(build_model(app, "shop:app")), AWSDeployer)


class _Failing:
    """A deployer whose second step fails, as a cloud API refusing a request would."""

    provider = "test"

    def __init__(self) -> None:
        self.applied: list[str] = []

    def apply(self, step: Step) -> None:
        if len(self.applied) == 1:
            raise RuntimeError("quota exceeded")
        self.applied.append(step.resource.name)


def test_a_failing_step_stops_the_apply_and_says_what_was_done() -> None:
    plan = diff("test", "shop", "dev", [_r("a"), _r("b"), _r("c")], {})
    deployer = _Failing()
    with pytest.raises(ApplyFailed) as failed:
        apply_plan(deployer, plan)  # type: ignore[arg-type]
    assert deployer.applied == ["a"]
    assert [s.resource.name for s in failed.value.done] == ["a"]
    assert str(failed.value) == (
        "create thing b failed after 1 finished step(s): quota exceeded; fix the cause and run the command "
        "again (finished steps are not repeated)"
    )
