"""``cloudq deploy``: the app's cloud resources as data, planned before anything changes.

Provider-neutral: the model of what an app needs (model.py), its ``deploy`` settings, plans and
their rendering. Deployers for each cloud live in the adapters (``cloudq_aws.deploy``,
``cloudq_gcp.deploy``) and are found by the broker URL's scheme (registry.py).
"""

from .base import MANAGED_BY, Deployer
from .model import AppModel, QueueSpec, TaskSpec, build_model
from .plan import DeployRefused, Plan, Resource, Step, diff, refuse_if
from .registry import deployer_for
from .render import render_plan
from .runner import ApplyFailed, Outcome, apply_plan, plan_deploy, plan_destroy
from .settings import DeploySettings, QueueOptions

__all__ = [
    "MANAGED_BY",
    "AppModel",
    "ApplyFailed",
    "DeployRefused",
    "DeploySettings",
    "Deployer",
    "Outcome",
    "Plan",
    "QueueOptions",
    "QueueSpec",
    "Resource",
    "Step",
    "TaskSpec",
    "apply_plan",
    "build_model",
    "deployer_for",
    "diff",
    "plan_deploy",
    "plan_destroy",
    "refuse_if",
    "render_plan",
]
