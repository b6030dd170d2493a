"""Each task's AWS Distro for OpenTelemetry collector (issue 16): the services export OTLP/HTTP
to it on the task's loopback (shared/telemetry.py), and it sends traces to X-Ray and to the
operations console (which draws its conversations from them, deploy/aws/console.py), and
metrics to CloudWatch (as embedded-metric-format log lines in the service's metrics log
group)."""

from __future__ import annotations

import json

# Pinned: the collector's configuration keys change between releases.
ADOT_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0"
OTLP_HTTP = "127.0.0.1:4318"  # the collector listens on the task's loopback only
# X-Ray's two write actions have no resource type: IAM accepts only "*" for them.
XRAY_WRITE = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
# What the EMF exporter does in a log group that exists (the stack creates it).
EMF_WRITE = ("logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents")
# The console's trace exporter: a network path inside the VPC, so no IAM action goes with it.
CONSOLE_EXPORTER = "otlphttp/console"


def metrics_log_group(env_name: str, service: str) -> str:
    return f"/school/{env_name}/{service}/metrics"


def collector_config(env_name: str, service: str, region: str, console: str) -> str:
    """The collector's configuration (given in AOT_CONFIG_CONTENT): OTLP/HTTP in; traces to
    X-Ray and to the console at `console` (its base URL); metrics to CloudWatch in the
    namespace School/<env>/<service>."""
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": OTLP_HTTP}}}},
        "processors": {"batch": {"timeout": "10s"}},
        "exporters": {
            "awsxray": {"region": region},
            # OTLP/HTTP protobuf, as the console's /v1/traces takes it, gzipped (it takes both).
            # No sending_queue or retry_on_failure here on purpose: the exporter's defaults
            # queue each batch and retry it in the background, so a console that is down or
            # being replaced costs its own spans (dropped once the queue is full or the retries
            # give up) and never holds up the X-Ray exporter beside it in the pipeline.
            CONSOLE_EXPORTER: {"endpoint": console, "compression": "gzip"},
            # A namespace per service: the metrics carry no service attribute of their own.
            "awsemf": {"region": region, "namespace": f"School/{env_name}/{service}",
                       "log_group_name": metrics_log_group(env_name, service),
                       "log_stream_name": "otel-metrics",
                       "dimension_rollup_option": "NoDimensionRollup"},
        },
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["batch"],
                       "exporters": ["awsxray", CONSOLE_EXPORTER]},
            "metrics": {"receivers": ["otlp"], "processors": ["batch"],
                        "exporters": ["awsemf"]},
        }},
    }
    return json.dumps(config, indent=1)  # JSON is YAML: the collector reads it as its config
