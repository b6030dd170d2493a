"""The edge: what stands between the internet and the APIs.

`make synth`, `make diff` and `make deploy` read CERTIFICATE_ARN (an ACM certificate in the
deployment's region for `*.DOMAIN_NAME`) and DOMAIN_NAME from the environment; deploy/aws/app.py
puts both into the app's context as `edge`, where every stack reads them (`settings`).

- With both, each service's load balancer is internet-facing and serves HTTPS on 443 under
  `TLS_POLICY`, its port 80 only redirects to 443, and the platform's one WAFv2 web ACL
  (`web_acl`: two AWS managed rule groups and a rate limit per client address, `RATE_LIMIT`)
  is associated with it. The console's load balancer stays internal, with the same HTTPS.
- Without them every load balancer is internal, on HTTP port 80 inside the VPC: nothing is
  served to the internet in plain HTTP, and there is no web ACL to pay for.

Either way every load balancer writes its access logs to a bucket of its own stack
(`access_log_bucket`), so that each stack still deploys alone, when synth knows the region
(deploy/aws/fargate.py, `log_access`)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from deploy.aws.audit import kept_bucket
from deploy.aws.scan import skip

# TLS 1.3, and TLS 1.2 only with ECDHE key exchange and AES-GCM (ELBSecurityPolicy-TLS13-1-2-Res-
# 2021-06): forward secrecy and AEAD ciphers for every client. TLS 1.3 alone (TLS13_13) would
# refuse the students' older phones and the TLS-inspecting proxies of school networks that still
# speak 1.2 only, and buy nothing those restricted 1.2 suites lack.
TLS_POLICY = elbv2.SslPolicy.TLS13_RES
# Days an access log file is kept (S3 Standard: log files are far under the 128 KiB a
# lifecycle transition needs). Long enough to look back over a term's incident.
ACCESS_LOG_DAYS = 90
# Old versions exist only if a log file is overwritten or deleted before it expires.
ACCESS_LOG_OLD_VERSION_DAYS = 7
# The AWS managed rule groups of the web ACL, in the order they are evaluated (after the rate
# rule): the OWASP-style core rule set and known-bad inputs (Log4j's JNDI lookups among them).
MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")
# The core rule set blocks any body over 8 KB, the most a WAF in front of a load balancer can
# inspect; an essay submitted to the assignment API is larger than that. It only counts here:
# the APIs cap bodies themselves (1 MiB) and validate every field.
COUNT_ONLY = {"AWSManagedRulesCommonRuleSet": ("SizeRestrictions_BODY",)}


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` in any `window_seconds` from one client address, over every API
    together (one web ACL, so one count per address); above it WAF answers 429 until the rate
    falls back. School networks put a classroom behind one address: 3,000 per 5 minutes is 10
    requests a second, sustained, for all of them. AWS WAF accepts windows of 60, 120, 300 or
    600 s and limits of 10 or more."""

    requests: int
    window_seconds: int


RATE_LIMIT = RateLimit(requests=3000, window_seconds=300)


@dataclass(frozen=True)
class Settings:
    """CERTIFICATE_ARN and DOMAIN_NAME, as deploy/aws/app.py puts them into the context."""

    certificate_arn: str | None = None
    domain_name: str | None = None

    @property
    def public(self) -> bool:
        return bool(self.certificate_arn and self.domain_name)

    def host(self, name: str) -> str:
        """`payment.school.example.com`: where a load balancer is reached, by a DNS record the
        domain's owner creates (the certificate must cover it)."""
        if not self.domain_name:
            raise ValueError("no DOMAIN_NAME: the load balancers have no names of their own")
        return f"{name}.{self.domain_name}"


def settings(scope: Construct) -> Settings:
    edge = scope.node.try_get_context("edge") or {}
    return Settings(certificate_arn=edge.get("certificate_arn") or None,
                    domain_name=edge.get("domain_name") or None)


def access_log_bucket(scope: Construct) -> s3.Bucket:
    """The load balancer's access logs: SSE-S3 (the one encryption ELB's log delivery
    supports), no public access, TLS only, ACLs off, expired after `ACCESS_LOG_DAYS`. The
    delivery principal's grant is CDK's `log_access_logs` (deploy/aws/fargate.py)."""
    bucket = kept_bucket(scope, "AccessLogs", ACCESS_LOG_DAYS, ACCESS_LOG_OLD_VERSION_DAYS,
                         encryption=s3.BucketEncryption.S3_MANAGED)
    skip(bucket, CKV_AWS_18="The access-log bucket's own access logs would need another "
                            "bucket; only the load balancer's log delivery writes here, and "
                            "CloudTrail records every change to the bucket and its policy.")
    return bucket


def web_acl(scope: Construct, env_name: str) -> wafv2.CfnWebACL:
    """The platform's one web ACL (REGIONAL), associated with every public load balancer by
    its stack: the rate limit first, then the managed rule groups; anything else is allowed."""
    rules = [_rate_rule(priority=0)] + [
        _managed_rule(name, priority) for priority, name in enumerate(MANAGED_RULE_GROUPS, 1)]
    return wafv2.CfnWebACL(
        scope, "WebAcl", name=f"school-{env_name}-edge", scope="REGIONAL",
        description=f"school {env_name}: in front of every public API load balancer",
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        visibility_config=_visibility(f"school-{env_name}-edge"), rules=rules,
        custom_response_bodies={"rate-limited": wafv2.CfnWebACL.CustomResponseBodyProperty(
            content_type="APPLICATION_JSON",
            content='{"type": "about:blank", "title": "Too Many Requests", "status": 429, '
                    '"detail": "Too many requests from this address; retry in a few minutes."}'
        )})


def _visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True)


def _rate_rule(priority: int) -> wafv2.CfnWebACL.RuleProperty:
    acl = wafv2.CfnWebACL
    return acl.RuleProperty(
        name="rate-per-client-address", priority=priority,
        statement=acl.StatementProperty(rate_based_statement=acl.RateBasedStatementProperty(
            aggregate_key_type="IP", limit=RATE_LIMIT.requests,
            evaluation_window_sec=RATE_LIMIT.window_seconds)),
        action=acl.RuleActionProperty(block=acl.BlockActionProperty(
            custom_response=acl.CustomResponseProperty(
                response_code=429, custom_response_body_key="rate-limited"))),
        visibility_config=_visibility("rate-per-client-address"))


def _managed_rule(name: str, priority: int) -> wafv2.CfnWebACL.RuleProperty:
    acl = wafv2.CfnWebACL
    overrides = [acl.RuleActionOverrideProperty(
        name=rule, action_to_use=acl.RuleActionProperty(count={}))
        for rule in COUNT_ONLY.get(name, ())]
    return acl.RuleProperty(
        name=name, priority=priority,
        statement=acl.StatementProperty(managed_rule_group_statement=(
            acl.ManagedRuleGroupStatementProperty(
                vendor_name="AWS", name=name, rule_action_overrides=overrides or None))),
        override_action=acl.OverrideActionProperty(none={}),
        visibility_config=_visibility(name))
