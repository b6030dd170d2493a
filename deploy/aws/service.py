"""One stack per service, so each deploys alone (`make deploy SERVICE=payment`).

It holds the service's API (Fargate behind a load balancer, health-checked on /healthz:
internet-facing on HTTPS behind the web ACL when the edge has a certificate, internal
otherwise, deploy/aws/edge.py), its worker (Fargate, scaled on the backlog per task of the queue
it consumes), one task role with exactly the SQS and SNS actions the topology gives the service
and the KMS actions on the messaging key that those need, its own PostgreSQL (credentials
generated into Secrets Manager), a migration container that must succeed before a new task's API
or worker starts, and its logs. What it shares with the console's stack (the task role's name,
the logs, the image, the load-balanced API) is built by deploy/aws/fargate.py.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from deploy.aws import console, fargate
from deploy.aws.access import CONSUME, DEAD_LETTER, PUBLISH, SEND, Access, access
from deploy.aws.identity import IdentityStack
from deploy.aws.messaging import MessagingStack
from deploy.aws.platform import PlatformStack
from deploy.aws.scan import skip
from deploy.aws.telemetry import (
    ADOT_IMAGE,
    EMF_WRITE,
    INTAKE_TOKEN,
    OTLP_HTTP,
    XRAY_WRITE,
    collector_config,
    metrics_log_group,
)
from shared.settings import PORTS
from shared.topology import TOPOLOGY, physical

# The worker adds a task above this many waiting messages per task, and removes one below the
# lower bound (each task handles SCHOOL_CONSUMER_CONCURRENCY batches at once).
BACKLOG_PER_TASK = (10, 100, 500)
MAX_WORKERS = 10


class ServiceStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str, service: str,
                 platform: PlatformStack, messaging: MessagingStack, identity: IdentityStack,
                 smtp: tuple[str, int], **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.env_name, self.service, self.oidc = env_name, service, identity.oidc
        self.add_stack_dependency(messaging)  # its queues must exist before its tasks start
        self.access = access(service)
        self.key_arn = platform.messaging_key.key_arn
        self.intake_token = platform.intake_token
        self.role = fargate.task_role(self, env_name, service,
                                      f"{service}: only what the topology gives it")
        for statement in self.statements(self.access):
            self.role.add_to_policy(statement)

        self.database = rds.DatabaseInstance(
            self, "Database", engine=rds.DatabaseInstanceEngine.postgres(
                version=rds.PostgresEngineVersion.VER_17_6),
            instance_type=ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.MICRO),
            vpc=platform.vpc, vpc_subnets=ec2.SubnetSelection(
                subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            credentials=rds.Credentials.from_generated_secret(
                "school", secret_name=f"school/{env_name}/{service}/database"),
            database_name=f"school_{service}", allocated_storage=20, storage_encrypted=True,
            backup_retention=Duration.days(7), removal_policy=RemovalPolicy.SNAPSHOT)
        skip(self.database,
             CKV_AWS_157="One instance in one zone: the cheap choice for a reference system; set "
                         "multi_az=True for production (it doubles the database's cost).",
             CKV_AWS_118="Enhanced monitoring adds a role and per-second OS metrics billed as "
                         "logs; the basic RDS metrics in CloudWatch suffice here.",
             CKV_AWS_161="The services log in with the password Secrets Manager generates and "
                         "injects into the task; IAM authentication would need a token refresh "
                         "in the connection pool.")
        # The generated secret is a construct of the stack, beside the database.
        for secret in self.node.find_all():
            if isinstance(secret, secretsmanager.CfnSecret):
                skip(secret, CKV_AWS_149="Encrypted with Secrets Manager's AWS-managed key; a "
                                         "customer key would have to be granted to every "
                                         "task's execution role.")
        self.logs = fargate.log_group(self, env_name, service)
        self.metrics_logs = logs.LogGroup(
            self, "MetricsLogs", log_group_name=metrics_log_group(env_name, service),
            retention=logs.RetentionDays.ONE_WEEK, removal_policy=RemovalPolicy.DESTROY)
        skip(self.metrics_logs, CKV_AWS_158="The collector's metric lines: counts and "
                                            "durations, nothing a customer key would protect.")
        self.role.add_to_policy(iam.PolicyStatement(
            sid="CollectorWritesMetrics", actions=list(EMF_WRITE),
            # the group's ARN ends in ":*", which takes in its streams
            resources=[self.metrics_logs.log_group_arn]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="CollectorSendsTraces", actions=list(XRAY_WRITE), resources=["*"]))
        image = fargate.image(service)
        environment = self.container_environment(smtp)

        api_task = self.task("ApiTask", "api", image, environment)
        self.api = fargate.load_balanced_api(self, "Api", cluster=platform.cluster, task=api_task,
                                             desired_count=2, name=service, internet=True,
                                             web_acl=platform.web_acl, min_healthy_percent=100)
        self.database.connections.allow_default_port_from(self.api.service)

        self.worker = ecs.FargateService(
            self, "Worker", cluster=platform.cluster,
            task_definition=self.task("WorkerTask", "worker", image, environment),
            desired_count=1, min_healthy_percent=100,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True))
        self.database.connections.allow_default_port_from(self.worker)
        self.scale_worker(platform.cluster)
        if self.access.publishes:
            self.alarm_on_dead_outbox_rows()

    def statements(self, needs: Access) -> list[iam.PolicyStatement]:
        """Named actions on named resources only: no wildcard action, no `Resource: *`."""
        def arns(service: str, names: tuple[str, ...]) -> list[str]:
            return fargate.arns(self, self.env_name, service, names)

        statements = []
        if needs.consumes:
            statements.append(iam.PolicyStatement(sid="ConsumeOwnQueue", actions=list(CONSUME),
                                                  resources=arns("sqs", needs.consumes)))
            statements.append(iam.PolicyStatement(sid="DeadLetterPoison",
                                                  actions=list(DEAD_LETTER),
                                                  resources=arns("sqs", needs.dead_letters)))
        if needs.sends:
            statements.append(iam.PolicyStatement(sid="SendToDestinations", actions=list(SEND),
                                                  resources=arns("sqs", needs.sends)))
        if needs.publishes:
            statements.append(iam.PolicyStatement(
                sid="PublishToTopic", actions=list(PUBLISH),
                resources=arns("sns", (TOPOLOGY.topic.name,))))
        if needs.kms:
            statements.append(iam.PolicyStatement(sid="UseTheMessagingKey",
                                                  actions=list(needs.kms),
                                                  resources=[self.key_arn]))
        return statements

    def container_environment(self, smtp: tuple[str, int]) -> dict[str, str]:
        """The variables `make up` sets, with AWS's values (shared/settings.py reads them)."""
        env = fargate.environment(self, self.env_name, self.service, db="postgres",
                                  oidc=self.oidc)
        if self.service == "notification":
            env |= {"SMTP_HOST": smtp[0], "SMTP_PORT": str(smtp[1])}
        return env

    def task(self, construct_id: str, role: str, image: ecs.ContainerImage,
             environment: dict[str, str]) -> ecs.FargateTaskDefinition:
        """A task whose `migrate` container must succeed before its `role` container starts."""
        task = fargate.task_definition(self, construct_id, self.role)
        if self.database.secret is None:
            raise ValueError(f"{self.service}: the database has no generated secret, so its "
                             f"tasks would get no PGHOST, PGUSER or PGPASSWORD")
        secrets = {variable: ecs.Secret.from_secrets_manager(self.database.secret, field)
                   for variable, field in (("PGHOST", "host"), ("PGPORT", "port"),
                                           ("PGUSER", "username"), ("PGPASSWORD", "password"))}

        def container(name: str, command: str, essential: bool) -> ecs.ContainerDefinition:
            return fargate.add_container(
                task, name, image=image, command=fargate.serve(command, self.service),
                environment=environment, logs=self.logs, essential=essential, secrets=secrets)

        migrate = container("migrate", "migrate", essential=False)
        main = container(role, role, essential=True)
        main.add_container_dependencies(ecs.ContainerDependency(
            container=migrate, condition=ecs.ContainerDependencyCondition.SUCCESS))
        # The collector: not essential (a task whose collector stopped keeps serving; the
        # SDK drops what it cannot export), started before the service so no span waits. It
        # sends the console's intake its credential, which ECS fetches with the execution role
        # (the task role may not read it) into the collector's environment alone.
        collector = task.add_container(
            "otel-collector", image=ecs.ContainerImage.from_registry(ADOT_IMAGE),
            essential=False, memory_reservation_mib=64,
            environment={"AOT_CONFIG_CONTENT": collector_config(
                self.env_name, self.service, self.region,
                console=console.traces_endpoint(self.env_name))},
            secrets={INTAKE_TOKEN: ecs.Secret.from_secrets_manager(self.intake_token)},
            logging=ecs.LogDrivers.aws_logs(stream_prefix="otel-collector", log_group=self.logs))
        # CDK's template validation takes the ${env:...} in that configuration for a
        # CloudFormation parameter outside an Fn::Sub; it is the collector's, and must reach it
        # as it is.
        Validations.of(task).acknowledge(Acknowledgment(
            id="CloudFormation-Validate::E1029",
            reason=f"${{env:{INTAKE_TOKEN}}} in AOT_CONFIG_CONTENT is expanded by the collector "
                   f"from its own environment, not by CloudFormation."))
        main.add_environment("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{OTLP_HTTP}")
        main.add_container_dependencies(ecs.ContainerDependency(
            container=collector, condition=ecs.ContainerDependencyCondition.START))
        if role == "api":
            main.add_port_mappings(ecs.PortMapping(container_port=PORTS[self.service]))
        return task

    def alarm_on_dead_outbox_rows(self) -> None:
        """The relay logs its dead-row count every minute as a JSON field (shared/outbox.py,
        `report_dead_rows`); a metric filter turns it into a metric and any dead row alarms."""
        metric_name = f"{self.service}-outbox-dead-rows"
        logs.MetricFilter(
            self, "OutboxDeadRows", log_group=self.logs, metric_namespace=f"School/{self.env_name}",
            metric_name=metric_name, metric_value="$.dead_rows",
            filter_pattern=logs.FilterPattern.string_value("$.outcome", "=", "outbox_dead_rows"))
        metric = cloudwatch.Metric(namespace=f"School/{self.env_name}", metric_name=metric_name,
                                   statistic="Maximum", period=Duration.minutes(5))
        metric.create_alarm(
            self, "OutboxDeadRowsAlarm", threshold=0, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{self.service}: outbox rows SQS or SNS refused for ever: "
                              f"`school outbox list {self.service}`")

    def scale_worker(self, cluster: ecs.ICluster) -> None:
        """Step scaling on the backlog per task: visible messages / running worker tasks."""
        [queue] = self.access.consumes
        visible = cloudwatch.Metric(
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions_map={"QueueName": physical(self.env_name, queue)},
            statistic="Maximum", period=Duration.minutes(1))
        tasks = cloudwatch.Metric(
            namespace="ECS/ContainerInsights", metric_name="RunningTaskCount",
            dimensions_map={"ClusterName": cluster.cluster_name,
                            "ServiceName": self.worker.service_name},
            statistic="Average", period=Duration.minutes(1))
        backlog = cloudwatch.MathExpression(
            expression="IF(tasks > 0, visible / tasks, visible)",
            using_metrics={"visible": visible, "tasks": tasks}, period=Duration.minutes(1),
            label=f"{queue} backlog per worker task")
        low, high, surge = BACKLOG_PER_TASK
        self.worker.auto_scale_task_count(min_capacity=1, max_capacity=MAX_WORKERS).scale_on_metric(
            "BacklogPerTask", metric=backlog,
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            scaling_steps=[autoscaling.ScalingInterval(upper=low, change=-1),
                           autoscaling.ScalingInterval(lower=high, change=+1),
                           autoscaling.ScalingInterval(lower=surge, change=+3)],
            cooldown=Duration.minutes(2))
