"""The AWS CDK app: `python -m deploy.aws.app` synthesizes every stack into cdk.out/."""
