"""``cloudq deploy`` on AWS: the deployer (deployer.py) over the desired state as data
(layout.py, iam.py), one ResourceOps per resource kind (ops.py), the CloudFormation rendering
(cloudformation.py) and the Lambda package (packaging.py, deps.py). Nothing here is imported by
the backends or the Lambda runtime."""
