"""The audit trail: every SQS and SNS management event, and every SQS data event on this
deployment's queues, recorded by CloudTrail into an S3 bucket of its own.

The bucket is encrypted with a customer-managed KMS key, blocks public access, refuses requests
without TLS, keeps versions and expires them by a lifecycle rule, and admits CloudTrail only for
this account and this trail. Log file validation lets `aws cloudtrail validate-logs` prove that
no delivered file was changed or removed."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from deploy.aws.scan import skip

# How long the trail's files are kept. They stay in S3 Standard: a lifecycle transition skips
# objects under 128 KiB, which nearly every trail file is.
KEEP_DAYS = 365
# A replaced or deleted file's old version (only an accident or an attack makes one).
OLD_VERSIONS_DAYS = 30


def trail_name(env_name: str) -> str:
    return f"school-{env_name}-audit"


class Audit(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        name = trail_name(env_name)
        trail_arn = stack.format_arn(service="cloudtrail", resource="trail", resource_name=name)
        only_our_trail = {"StringEquals": {"aws:SourceArn": trail_arn}}
        cloudtrail_principal = iam.ServicePrincipal("cloudtrail.amazonaws.com")

        self.key = kms.Key(self, "Key", alias=f"alias/school-{env_name}-audit",
                           enable_key_rotation=True,
                           description=f"school {env_name}: encrypts the audit trail's files")
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="TrailEncryptsItsFiles", principals=[cloudtrail_principal],
            actions=["kms:GenerateDataKey*"], resources=["*"],
            conditions={**only_our_trail, "StringLike": {
                "kms:EncryptionContext:aws:cloudtrail:arn": trail_arn}}))
        # The bucket uses an S3 Bucket Key, and then CloudTrail needs Decrypt as well to create
        # or update a trail that encrypts with the key.
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="TrailUsesTheBucketKey", principals=[cloudtrail_principal],
            actions=["kms:Decrypt"], resources=["*"], conditions=only_our_trail))
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="TrailDescribesTheKey", principals=[cloudtrail_principal],
            actions=["kms:DescribeKey"], resources=["*"], conditions=only_our_trail))

        self.bucket = kept_bucket(self, "Bucket", KEEP_DAYS, OLD_VERSIONS_DAYS,
                                  encryption=s3.BucketEncryption.KMS, encryption_key=self.key,
                                  bucket_key_enabled=True)
        skip(self.bucket, CKV_AWS_18="The audit bucket's own access logs would need a second "
                                     "bucket; its objects are written by CloudTrail alone, "
                                     "versioned, and CloudTrail's management events record "
                                     "every change to the bucket and its policy.")
        # CloudTrail of this account, for this trail only (the confused-deputy guard).
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="TrailReadsTheAcl", principals=[cloudtrail_principal],
            actions=["s3:GetBucketAcl"], resources=[self.bucket.bucket_arn],
            conditions=only_our_trail))
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="TrailWritesItsFiles", principals=[cloudtrail_principal],
            actions=["s3:PutObject"],
            resources=[self.bucket.arn_for_objects(f"AWSLogs/{stack.account}/*")],
            conditions={"StringEquals": {"aws:SourceArn": trail_arn,
                                         "s3:x-amz-acl": "bucket-owner-full-control"}}))

        self.trail = cloudtrail.CfnTrail(
            self, "Trail", trail_name=name, is_logging=True,
            s3_bucket_name=self.bucket.bucket_name, kms_key_id=self.key.key_arn,
            enable_log_file_validation=True, include_global_service_events=True,
            is_multi_region_trail=True, advanced_event_selectors=self.selectors(stack, env_name))
        # The bucket must admit CloudTrail before the trail is created (the key it references).
        self.trail.node.add_dependency(self.bucket.policy or self.bucket)

    @staticmethod
    def selectors(stack: Stack, env_name: str
                  ) -> list[cloudtrail.CfnTrail.AdvancedEventSelectorProperty]:
        """Every management event (SQS's and SNS's among them: creating, changing, purging and
        deleting queues and topics, subscriptions, policies), and the data events (send,
        receive, delete, change visibility) of this deployment's queues, whose names all start
        with `<env>-`."""
        field = cloudtrail.CfnTrail.AdvancedFieldSelectorProperty
        queues = stack.format_arn(service="sqs", resource=f"{env_name}-")
        return [
            cloudtrail.CfnTrail.AdvancedEventSelectorProperty(
                name="Management events", field_selectors=[
                    field(field="eventCategory", equal_to=["Management"])]),
            cloudtrail.CfnTrail.AdvancedEventSelectorProperty(
                name=f"SQS data events of the {env_name} queues", field_selectors=[
                    field(field="eventCategory", equal_to=["Data"]),
                    field(field="resources.type", equal_to=["AWS::SQS::Queue"]),
                    field(field="resources.ARN", starts_with=[queues])]),
        ]


def kept_bucket(scope: Construct, construct_id: str, days: int, old_version_days: int,
                **encryption: Any) -> s3.Bucket:
    """A private bucket of records written by AWS itself (the trail, load balancer logs): no
    public access, TLS only, ACLs off, versioned, retained with its stack, each object expired
    after `days` (an old version after `old_version_days`); `encryption` says how it is
    encrypted."""
    return s3.Bucket(
        scope, construct_id, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True, versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=RemovalPolicy.RETAIN,
        lifecycle_rules=[s3.LifecycleRule(
            id="expire", expiration=Duration.days(days),
            noncurrent_version_expiration=Duration.days(old_version_days),
            abort_incomplete_multipart_upload_after=Duration.days(1))], **encryption)
