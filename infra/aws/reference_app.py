"""The app behind the reference template stack.yaml in this folder.

Regenerate the template after a change to the deployer (tests/deploy checks it is current):

    cd infra/aws && cloudq deploy -A reference_app:app --emit cloudformation > stack.yaml
"""

from cloudq import App
from cloudq.schedules import crontab

app = App(
    "shop",
    broker="sqs://?prefix=shop-prod-&bucket=shop-prod-payloads",
    results="dynamodb://shop-prod-results",
    deploy={
        "stage": "prod",
        "tags": {"team": "checkout"},
        "queues": {"emails": {"runtime": "lambda", "batch_size": 50, "batching_window": 5, "max_concurrency": 20}},
    },
)


@app.task(name="send_email", queue="emails", time_limit=30, max_retries=5)
def send_email(to: str, subject: str) -> None:
    """Runs on Lambda: the emails queue's event source mapping invokes the function in batches."""


@app.task(name="add")
def add(a: int, b: int) -> int:
    """Runs on container workers (cloudq worker -A reference_app:app -Q default)."""
    return a + b


@app.periodic_task(crontab(minute=0, hour=6, timezone="Europe/Paris"), name="nightly-report")
def nightly_report() -> None:
    """Every day at 06:00 Paris time: an EventBridge Scheduler schedule sends it to the default queue."""
