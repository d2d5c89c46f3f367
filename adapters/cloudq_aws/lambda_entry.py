"""``cloudq_aws.lambda_entry.handler``: the handler string deployed functions name, kept stable so
stacks deployed before the move to ``lambda_/`` (and templates copied from infra/) keep working."""

from .lambda_.entry import handler as handler
