"""App.lambda_handler / App.push_app reach the runtimes of the extras through entry points."""

import pytest

from cloudq import ConfigurationError


def test_lambda_handler_is_found_and_checks_the_broker(app):
    with pytest.raises(ConfigurationError, match="reads SQS events.*sqs://"):
        app.lambda_handler()


@pytest.mark.parametrize("kind", ["wsgi", "asgi", "cloud_event"])
def test_push_apps_are_found_and_check_the_broker(app, kind):
    with pytest.raises(ConfigurationError, match="pubsub://"):
        app.push_app(kind)


def test_unknown_push_kind_is_refused(app):
    with pytest.raises(ConfigurationError, match="wsgi, asgi or cloud_event"):
        app.push_app("grpc")
